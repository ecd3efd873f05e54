"""The `micros_sts` writer against a Simphony STS Gen2 fake that refuses what the API
refuses: a check per order, none twice, a cancel voids it, failures say whether a retry
can help."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from agent.config import MicrosStsSettings
from agent.writers import DownItem, WriteError
from agent.writers.micros_sts import MicrosStsWriter
from contract import order_key
from tests.agent.downlink import sts_fake
from tests.agent.downlink.orders import cancel, order
from tests.agent.downlink.sts_fake import StsFake


def _writer(tmp_path: Path, fake: StsFake, **more: object) -> MicrosStsWriter:
    token = tmp_path / "sts.token"
    token.write_text(sts_fake.TOKEN + "\n")
    settings = MicrosStsSettings(
        url=sts_fake.BASE,
        org_short_name=sts_fake.ORG,
        loc_ref=sts_fake.LOC,
        rvc_ref=sts_fake.RVC,
        employee_ref=900,
        token_file=token,
        **more,  # type: ignore[arg-type]
    )
    return MicrosStsWriter(settings, fake.transport())


def _item(body: object, seq: int = 1, prior: str | None = None) -> DownItem:
    return DownItem(seq=seq, key=order_key(body), body=body, prior=prior)  # type: ignore[arg-type]


async def test_an_order_becomes_one_check_and_a_resend_makes_no_second(tmp_path: Path) -> None:
    fake = StsFake()
    writer = _writer(tmp_path, fake)
    ref = await writer.write(_item(order()))
    assert list(fake.checks) == [ref]
    posted = json.loads(next(r for r in fake.requests if r.method == "POST").content)
    assert posted["header"]["checkName"] == "10001"
    assert posted["header"]["checkEmployeeRef"] == 900
    assert [(m["menuItemId"], m["quantity"]) for m in posted["menuItems"]] == [(4711, 2), (815, 1)]
    # The answer was lost and the order comes again: found by its name, not posted again.
    assert await writer.write(_item(order())) == ref
    assert len(fake.checks) == 1
    assert sum(1 for r in fake.requests if r.method == "POST") == 1


async def test_a_cancel_voids_the_check(tmp_path: Path) -> None:
    fake = StsFake()
    writer = _writer(tmp_path, fake)
    ref = await writer.write(_item(order()))
    assert await writer.write(_item(cancel(), seq=2, prior=ref)) == ref
    assert fake.voided == [ref]
    assert not fake.checks
    # Again (a resend): the check is gone already, which is what was wanted.
    assert await writer.write(_item(cancel(), seq=2, prior=ref)) == ref


async def test_unreachable_is_retryable_and_an_unknown_item_is_permanent(tmp_path: Path) -> None:
    fake = StsFake()
    writer = _writer(tmp_path, fake)
    fake.down = True
    with pytest.raises(WriteError) as caught:
        await writer.write(_item(order()))
    assert not caught.value.permanent
    assert "unreachable" in caught.value.reason
    fake.down = False
    odd = order(lines=[{**order().lines[0].model_dump(mode="json"), "sku": "999"}], total="37.80")
    with pytest.raises(WriteError) as caught:
        await writer.write(_item(odd))
    assert caught.value.permanent
    assert "999 is not configured" in caught.value.reason
    named = order(lines=[{**order().lines[0].model_dump(mode="json"), "sku": "ABC-1"}])
    with pytest.raises(WriteError, match="not a Simphony menu item number") as caught:
        await writer.write(_item(named))
    assert caught.value.permanent
    assert not fake.checks


async def test_a_refused_token_is_retryable(tmp_path: Path) -> None:
    fake = StsFake()
    writer = _writer(tmp_path, fake)
    assert writer.settings.token_file is not None
    writer.settings.token_file.write_text("expired")
    with pytest.raises(WriteError, match="401") as caught:
        await writer.write(_item(order()))
    assert not caught.value.permanent  # a renewed token file makes the next try pass
    writer.settings.token_file.write_text(sts_fake.TOKEN)
    assert await writer.write(_item(order()))


BAD_REQUESTS = {
    "rule_bearer": lambda: httpx.Request(
        "GET", f"{sts_fake.BASE}/checks", headers=_context() | {"Authorization": "Bearer x"}
    ),
    "rule_context_headers": lambda: httpx.Request(
        "GET", f"{sts_fake.BASE}/checks", headers={"Authorization": f"Bearer {sts_fake.TOKEN}"}
    ),
    "rule_check_header": lambda: _post({"menuItems": [{"menuItemId": 4711, "quantity": 1}]}),
    "rule_unique_check_name": lambda: _post(_check("DUP")),
    "rule_known_menu_items": lambda: _post(_check("X", item=12345)),
}


def _context() -> dict[str, str]:
    return {
        "Simphony-OrgShortName": sts_fake.ORG,
        "Simphony-LocRef": sts_fake.LOC,
        "Simphony-RvcRef": str(sts_fake.RVC),
    }


def _check(name: str, item: int = 4711) -> dict[str, object]:
    header = {"orgShortName": sts_fake.ORG, "locRef": sts_fake.LOC, "rvcRef": sts_fake.RVC}
    return {"header": header | {"checkName": name}, "menuItems": [{"menuItemId": item}]}


def _post(body: dict[str, object]) -> httpx.Request:
    headers = _context() | {"Authorization": f"Bearer {sts_fake.TOKEN}"}
    return httpx.Request("POST", f"{sts_fake.BASE}/checks", json=body, headers=headers)


def test_every_rule_has_a_request_it_refuses() -> None:
    assert sorted(BAD_REQUESTS) == StsFake().rules


@pytest.mark.parametrize("rule", sorted(BAD_REQUESTS))
def test_each_rule_bites_and_without_it_the_request_gets_through(rule: str) -> None:
    for switched_off in (False, True):
        fake = StsFake()
        fake.handle(_post(_check("DUP")))  # an open check named DUP
        if switched_off:
            fake.off.add(rule)
        reply = fake.handle(BAD_REQUESTS[rule]())
        if switched_off:
            assert reply.status_code < 300, (rule, reply.text)
        else:
            assert reply.status_code >= 400, rule
            assert reply.json()["detail"]
