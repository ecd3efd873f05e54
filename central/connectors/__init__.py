"""Target systems, one module each, registered by the `type` their config uses.

`CONNECTORS[type]` gives the settings model, the factory that builds the connector
around an injected `httpx.AsyncClient`, and the reply a dry run pretends to get.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from ._base import (
    Connector,
    ConnectorFactory,
    DeliveryResult,
    DryRunResponder,
    DryRunTransport,
    Exchange,
    Outcome,
    Routed,
    TargetSettings,
    Traced,
    classify,
)
from .adobe_commerce.connector import AdobeCommerceConnector, AdobeCommerceSettings
from .adobe_commerce.connector import dry_run_response as _adobe_dry_run
from .commercetools.connector import CommercetoolsConnector, CommercetoolsSettings
from .commercetools.connector import dry_run_response as _commercetools_dry_run
from .http import HttpConnector, HttpSettings
from .http import dry_run_response as _http_dry_run
from .salesforce.connector import SalesforceConnector, SalesforceSettings
from .salesforce.connector import dry_run_response as _salesforce_dry_run

__all__ = [
    "CONNECTORS",
    "Connector",
    "DeliveryResult",
    "DryRunTransport",
    "Exchange",
    "Outcome",
    "Registration",
    "Routed",
    "TargetConfig",
    "TargetSettings",
    "Traced",
    "build_connector",
    "classify",
]


@dataclass(frozen=True)
class Registration:
    settings: type[TargetSettings]
    factory: ConnectorFactory
    dry_run: DryRunResponder

    @property
    def required_route(self) -> tuple[str, ...]:
        return tuple(getattr(self.factory, "required_route", ()))


CONNECTORS: dict[str, Registration] = {
    "http": Registration(HttpSettings, HttpConnector, _http_dry_run),
    "commercetools": Registration(
        CommercetoolsSettings, CommercetoolsConnector, _commercetools_dry_run
    ),
    "adobe_commerce": Registration(AdobeCommerceSettings, AdobeCommerceConnector, _adobe_dry_run),
    "salesforce": Registration(SalesforceSettings, SalesforceConnector, _salesforce_dry_run),
}

TargetConfig = Annotated[
    HttpSettings | CommercetoolsSettings | AdobeCommerceSettings | SalesforceSettings,
    Field(discriminator="type"),
]
"""One `[[central.targets]]` entry: the union of every registered settings model."""


def build_connector(settings: Any, client: Any) -> Connector:
    """The connector for `settings.type`, around `client`."""
    return CONNECTORS[settings.type].factory(settings, client)
