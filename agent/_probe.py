"""After a failed connection, ask the broker's port which scheme it speaks: a plain
`mqtt://` URL aimed at a TLS listener (or `mqtts://` at a plain one) otherwise shows as
"connection reset" or a timeout that blames the network."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid

__all__ = ["scheme_mismatch"]

# A reason in the TLS alert or error that means the other side does not speak TLS at all.
_NOT_TLS = ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF", "RECORD_LAYER", "PACKET_LENGTH_TOO_LONG")


def _connect_packet() -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session and a throwaway client id (so it never
    takes over the agent's own session)."""
    client_id = f"tillbridge-probe-{uuid.uuid4().hex[:12]}".encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a"
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = variable + payload
    return b"\x10" + bytes([len(body)]) + body


async def _speaks_tls(host: str, port: int, within: float) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only asking which protocol answers
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host), within
        )
    except ssl.SSLError as exc:
        # The server answered the handshake with an alert (a client certificate it wants,
        # a version it refuses): it speaks TLS all the same.
        return not any(mark in str(exc).upper() for mark in _NOT_TLS)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), within)
    return True


async def _speaks_plain_mqtt(host: str, port: int, within: float) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), within)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(_connect_packet())
        await asyncio.wait_for(writer.drain(), within)
        answer = await asyncio.wait_for(reader.read(4), within)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), within)
    return answer[:1] == b"\x20"  # CONNACK, whether it accepts this client or not


async def scheme_mismatch(host: str, port: int, *, tls: bool, within: float = 3.0) -> str | None:
    """A sentence naming the fix when the port speaks the other scheme, else None."""
    if not tls and await _speaks_tls(host, port, within):
        return f"the broker expects TLS on port {port}; use mqtts://{host}:{port}"
    if tls and await _speaks_plain_mqtt(host, port, within):
        return f"the broker speaks plain MQTT on port {port}, not TLS; use mqtt://{host}:{port}"
    return None
