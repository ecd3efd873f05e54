"""Adobe Commerce answers: JSON read with exact decimals, and a refusal's reason in
Magento's own words, its `%1`/`%name` placeholders filled and a missing ACL resource
named as the integration's to grant."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx

from .._base import Answered

__all__ = ["answer", "dec", "read", "reason", "reason_or_empty"]


def read(response: httpx.Response) -> Any:
    """A JSON answer with its numbers as decimals."""
    return json.loads(response.content, parse_float=Decimal)


def dec(value: Any) -> Decimal:
    """A number Magento answered, exactly as written (answers are read with decimals)."""
    return Decimal(str(value)) if value is not None else Decimal(0)


def _render(message: str, parameters: Any) -> str:
    """Magento's `%1`/`%name` placeholders filled from `parameters`."""
    if isinstance(parameters, list):
        for index, value in enumerate(parameters, start=1):
            message = message.replace(f"%{index}", str(value))
    elif isinstance(parameters, dict):
        for name, value in parameters.items():
            message = message.replace(f"%{name}", str(value))
    return message


def answer(response: httpx.Response, why: str = "") -> Answered:
    """The refusal of an answer, with `why` or Magento's message as its reason."""
    return Answered(response, why or reason(response))


def reason(response: httpx.Response) -> str:
    request = response.request
    status = response.status_code
    return f"{request.method} {request.url.path} answered {status}: {_message(response)}"


def reason_or_empty(response: httpx.Response) -> str:
    return "" if 200 <= response.status_code < 300 else reason(response)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "message" in body:
        message = _render(str(body["message"]), body.get("parameters"))
        if "isn't authorized to access" in message:
            message += " (grant that resource to the integration: System > Integrations)"
        return message
    return response.text[:200]
