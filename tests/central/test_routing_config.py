"""The relay's routing and target config: every mistake named by key and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.config import load_central_config
from central.routing import load_sku_table
from common.settings import ConfigError

BASE = """
[central]
data_dir = "{tmp}"
[[central.targets]]
name = "shop"
type = "http"
url = "http://shop.test"
"""


def load(tmp_path: Path, extra: str) -> list[str]:
    file = tmp_path / "central.toml"
    file.write_text(BASE.format(tmp=tmp_path) + extra, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_central_config(file)
    return caught.value.problems


def test_a_mistyped_target_key_is_named(tmp_path: Path) -> None:
    (problem,) = load(tmp_path, 'tokn_file = "x"\n')
    assert problem == f"{tmp_path / 'central.toml'}: central.targets[0].tokn_file: unknown key"


def test_an_unknown_connector_type_is_named(tmp_path: Path) -> None:
    file = tmp_path / "central.toml"
    file.write_text(
        f'[central]\ndata_dir = "{tmp_path}"\n[[central.targets]]\nname = "x"\ntype = "shopify"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_central_config(file)
    assert any("type" in p and "shopify" in p for p in caught.value.problems)


def test_a_store_table_for_no_known_target_is_refused(tmp_path: Path) -> None:
    problems = load(tmp_path, '[central.stores."0042"]\ncomercetools = { store = "x" }\n')
    assert any("stores.0042.comercetools: not a target name or type" in p for p in problems)


def test_a_target_named_twice_is_refused(tmp_path: Path) -> None:
    twice = '[[central.targets]]\nname = "shop"\ntype = "http"\nurl = "http://b.test"\n'
    problems = load(tmp_path, twice)
    assert any("the name 'shop' is used twice" in p for p in problems)


def test_a_missing_secret_file_names_its_key(tmp_path: Path) -> None:
    (problem,) = load(tmp_path, f'token_file = "{tmp_path / "nope"}"\n')
    assert problem.endswith(f"central.targets[0].token_file: file not found: {tmp_path / 'nope'}")


def test_a_secret_file_fills_the_secret(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret-value\n", encoding="utf-8")
    file = tmp_path / "central.toml"
    file.write_text(
        BASE.format(tmp=tmp_path) + f'token_file = "{tmp_path / "token"}"\n', encoding="utf-8"
    )
    cfg = load_central_config(file)
    (target,) = cfg.targets
    assert target.token.get_secret_value() == "s3cret-value"  # type: ignore[attr-defined]
    assert "s3cret-value" not in repr(cfg)


def test_a_bad_sku_table_names_file_and_row(tmp_path: Path) -> None:
    table = tmp_path / "skus.csv"
    table.write_text("pos_sku,sku\n111,A\n111,B\n", encoding="utf-8")
    (problem,) = load(tmp_path, f'[central.routing]\nsku_table = "{table}"\n')
    assert problem.endswith(f"{table} row 3: 111 is mapped twice")
    table.write_text("item,sku\n", encoding="utf-8")
    (problem,) = load(tmp_path, f'[central.routing]\nsku_table = "{table}"\n')
    assert "needs the columns pos_sku,sku" in problem


def test_the_sku_table_maps_per_target_before_shared(tmp_path: Path) -> None:
    table = tmp_path / "skus.csv"
    table.write_text("pos_sku,sku,target\n111,SHARED,\n111,FOR-CT,commercetools\n", "utf-8")
    skus = load_sku_table(table)
    assert skus.shared == {"111": "SHARED"}
    assert skus.by_target == {"commercetools": {"111": "FOR-CT"}}


def test_a_target_without_its_credentials_is_refused_by_key(tmp_path: Path) -> None:
    file = tmp_path / "central.toml"
    file.write_text(
        f'[central]\ndata_dir = "{tmp_path}"\n'
        '[[central.targets]]\nname = "ct"\ntype = "commercetools"\n'
        'api_url = "https://api.ct.test"\nauth_url = "https://auth.ct.test"\n'
        'project_key = "p"\nclient_id = "c"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_central_config(file)
    assert caught.value.problems == [
        f"{file}: central.targets[0].client_secret_file: required for a commercetools target (ct)"
    ]
    file.write_text(file.read_text() + "dry_run = true\n", encoding="utf-8")
    assert load_central_config(file).targets[0].dry_run


SOURCE = """
[[central.targets]]
name = "ct"
type = "commercetools"
api_url = "https://api.ct.test"
auth_url = "https://auth.ct.test"
project_key = "acme"
client_id = "relay"
dry_run = true
kinds = ["sale", "fulfillment"]
"""


def test_an_order_source_names_an_existing_target_of_its_type(tmp_path: Path) -> None:
    problems = load(
        tmp_path,
        SOURCE + '[central.order_sources.web]\ntype = "commercetools"\n'
        'target = "ctt"\npickup_methods = ["click-collect"]\n',
    )
    assert problems == [
        f"{tmp_path / 'central.toml'}: central: order_sources.web.target: no "
        "[[central.targets]] entry is named 'ctt'"
    ]
    problems = load(
        tmp_path, SOURCE + '[central.order_sources.web]\ntype = "adobe_commerce"\ntarget = "ct"\n'
    )
    assert any(
        "order_sources.web.target: ct is a commercetools target, not adobe_commerce" in p
        for p in problems
    )


def test_an_order_source_target_must_take_fulfilment(tmp_path: Path) -> None:
    no_kind = SOURCE.replace('kinds = ["sale", "fulfillment"]', 'kinds = ["sale"]')
    problems = load(
        tmp_path,
        no_kind + '[central.order_sources.web]\ntype = "commercetools"\n'
        'target = "ct"\npickup_methods = ["click-collect"]\n',
    )
    assert any('target ct must take the "fulfillment" kind' in p for p in problems)


def test_an_order_source_says_which_orders_are_a_stores(tmp_path: Path) -> None:
    file = tmp_path / "central.toml"
    problems = load(
        tmp_path,
        SOURCE + '[central.order_sources.web]\ntype = "commercetools"\n'
        'target = "ct"\nintervl_seconds = 5\npickup_methods = ["c"]\n',
    )
    assert problems == [f"{file}: central.order_sources.web.intervl_seconds: unknown key"]
    problems = load(
        tmp_path, SOURCE + '[central.order_sources.web]\ntype = "commercetools"\ntarget = "ct"\n'
    )
    assert any(
        p.startswith(f"{file}: central.order_sources.web")
        and "pickup_methods, ship_from_store_methods or fulfilment_field" in p
        for p in problems
    ), problems


def test_a_valid_order_source_loads(tmp_path: Path) -> None:
    file = tmp_path / "central.toml"
    file.write_text(
        BASE.format(tmp=tmp_path)
        + SOURCE
        + '[central.order_sources.web]\ntype = "commercetools"\ntarget = "ct"\n'
        'pickup_methods = ["click-collect"]\nstores = { "berlin-mitte" = "0042" }\n',
        encoding="utf-8",
    )
    config = load_central_config(file)
    assert config.order_sources["web"].stores == {"berlin-mitte": "0042"}
