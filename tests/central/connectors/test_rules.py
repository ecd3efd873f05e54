"""Each documented rule of each fake, switched off in turn, makes the contract suite
fail — so no rule is there for show, and none can be dropped unnoticed."""

from __future__ import annotations

import functools

import pytest

from . import test_adobe_commerce, test_commercetools, test_salesforce
from .contract import Case, ConnectorContract

CASES = {
    "commercetools": test_commercetools.case,
    "adobe_commerce": test_adobe_commerce.case,
    "salesforce": test_salesforce.case,
}
EVERY_RULE = [(target, rule) for target, case in CASES.items() for rule in case().fake().RULES]


@pytest.mark.parametrize(("target", "rule"), EVERY_RULE, ids=[f"{t}-{r}" for t, r in EVERY_RULE])
def test_the_contract_suite_fails_without_the_rule(target: str, rule: str) -> None:
    case = CASES[target]()
    without = Case(
        settings=case.settings,
        fake=functools.partial(case.fake, without={rule}),
        probes=case.probes,
        kinds=case.kinds,
    )
    with pytest.raises(AssertionError, match=f"rule {rule} is not enforced"):
        ConnectorContract().test_the_fake_enforces_each_documented_rule(without)


@pytest.mark.parametrize("target", sorted(CASES))
def test_every_rule_names_its_source(target: str) -> None:
    rules = CASES[target]().fake().RULES
    assert len(rules) >= 8
    for rule, source in rules.items():
        cited = source[source.rfind("(") + 1 : -1]
        assert source.endswith(")"), f"{rule}: cite the page or issue in parentheses"
        assert "." in cited, f"{rule}: {cited!r} names no page"
