"""`[central.feeds.NAME]`: the documented example loads, and each mistake is named."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from central.config import CentralConfig
from central.feeds import FeedSettings

ROOT = Path(__file__).resolve().parents[3]


def example_feeds() -> dict[str, Any]:
    """The commented [central.feeds.*] tables of config.example.toml, uncommented."""
    lines = (ROOT / "config.example.toml").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# [central.feeds."))
    kept = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        if line.startswith("# "):
            kept.append(line[2:])
    found: dict[str, Any] = tomllib.loads("\n".join(kept))["central"]["feeds"]
    return found


def test_the_documented_example_loads() -> None:
    feeds = example_feeds()
    assert set(feeds) == {"catalog", "crm", "shop"}
    targets = [
        {
            "name": "ct-eu",
            "type": "commercetools",
            "api_url": "https://api.test",
            "auth_url": "https://auth.test",
            "project_key": "acme",
            "client_id": "relay",
        },
        {"name": "sf", "type": "salesforce", "client_id": "app"},
        {"name": "shop", "type": "adobe_commerce", "base_url": "https://shop.test"},
    ]
    cfg = CentralConfig.model_validate({"targets": targets, "feeds": feeds})
    assert cfg.feeds["crm"].consent == {"email": "!HasOptedOutOfEmail", "phone": "!DoNotCall"}


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"fields": {"shoe_size": "Shoe__c"}}, "fields.shoe_size: not a customer field"),
        ({"consent": {"tier": "Ok__c"}}, "consent.tier: consent rules are for"),
        ({"customers_to": "home_store"}, "customers_to = home_store needs fields.home_store"),
        ({"preferences": {"x": "Bad Field"}}, "is not a Salesforce field name"),
        ({"type": "adobe_commerce"}, "an adobe_commerce feed needs currency"),
    ],
)
def test_a_wrong_feed_is_named(extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        FeedSettings.model_validate({"type": "salesforce", "target": "sf", **extra})


def test_a_feed_names_a_target_of_its_own_type() -> None:
    with pytest.raises(ValidationError, match=r"feeds\.crm\.target: no salesforce target"):
        CentralConfig.model_validate(
            {
                "targets": [{"name": "sf", "type": "http", "url": "http://x.test"}],
                "feeds": {"crm": {"type": "salesforce", "target": "sf"}},
            }
        )
