"""Per-store broker credentials, behind `tillbridge-central provision-store`.

Each store gets a Mosquitto user of its own (user name = store id) and a random
password. One block of ACL patterns lets every store write only its own records,
status and downlink answers and read only its own acks, commands and downlink; the
relay's user reads and writes every store's topics. The password file is written in
Mosquitto 2's hashed format, so the relay's host needs no mosquitto_passwd binary.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "ACL_BEGIN",
    "ACL_END",
    "DEFAULT_AGENT_DIR",
    "STORE_ID",
    "ProvisionError",
    "Provisioned",
    "acl_block",
    "ensure_acl",
    "hash_password",
    "new_password",
    "provision_store",
    "set_password",
    "verify_password",
]

STORE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # the contract's StoreId
_PREFIX = re.compile(r"^[^#+\s]+[^/#+\s]$")  # BrokerSettings.topic_prefix
_URL = re.compile(r"^(mqtts?)://([^/\s:]+)(:\d{1,5})?/?$")  # BrokerSettings.url
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")

# Mosquitto's `$7$` format: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte key, both in
# standard base64 with padding. The count is stored per line, so it can change later.
# Store passwords are 256 random bits, which no iteration count makes harder to guess;
# the count only guards hand-chosen passwords (the relay's), and the broker pays it on
# every CONNECT, so it stays at Mosquitto 2.1's default rather than a login-grade one.
PBKDF2_ITERATIONS = 1000
_SALT_BYTES = 12
_KEY_BYTES = 64

ACL_BEGIN = "# BEGIN tillbridge "
ACL_END = "# END tillbridge "
DEFAULT_AGENT_DIR = "/etc/tillbridge"
_FILE_MODE = 0o640  # the broker's group must read the password and ACL files


class ProvisionError(ValueError):
    """An argument that cannot be provisioned (bad store id, URL or prefix)."""


@dataclasses.dataclass(frozen=True)
class Provisioned:
    """What `provision_store` wrote; never the password itself."""

    store: str
    rotated: bool  # the store had a password before; the old one is now gone
    password_file: Path  # the broker's password file
    acl_file: Path
    acl_changed: bool
    agent_config: Path  # <out>/<store>/agent.toml
    agent_password: Path  # <out>/<store>/mqtt_password, mode 0600


def new_password() -> str:
    """256 random bits as 43 URL-safe characters: no `:`, quote or space to escape."""
    return secrets.token_urlsafe(32)


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS) -> str:
    """The `$7$<iterations>$<salt>$<key>` entry Mosquitto 2 checks a password against."""
    salt = secrets.token_bytes(_SALT_BYTES)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, _KEY_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def verify_password(password: str, entry: str) -> bool:
    """Whether `password` matches a `$7$` entry (the hash part of a password-file line)."""
    parts = entry.split("$")
    if len(parts) != 5 or parts[:2] != ["", "7"] or not parts[2].isdigit():
        return False
    try:
        salt, key = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    except ValueError:
        return False
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]), len(key))
    return hmac.compare_digest(got, key)


def set_password(password_file: Path, username: str, password: str) -> bool:
    """Add or replace `username`'s line in a Mosquitto password file, keeping every
    other line as it was. True when the user had a line before (a rotation)."""
    if not username or ":" in username or any(c.isspace() for c in username):
        raise ProvisionError(f"user name {username!r} cannot go into a password file")
    line = f"{username}:{hash_password(password)}"
    with _locked(password_file):
        old = _read_lines(password_file)
        kept = [entry for entry in old if entry.split(":", 1)[0] != username]
        _replace(password_file, "".join(f"{entry}\n" for entry in [*kept, line]))
    return len(kept) != len(old)


def acl_block(prefix: str, relay_user: str) -> str:
    """The ACL lines for every store under `prefix`, and for the relay's user."""
    p = prefix.rstrip("/")
    return (
        f"{ACL_BEGIN}{p}\n"
        "# Written by `tillbridge-central provision-store`; the command replaces these\n"
        "# lines, so change them in the command, not here. Pattern lines apply to every\n"
        "# user: %u is the connecting user, which for a store is its id, so each store\n"
        "# writes only its own records, status and downlink answers and reads only its\n"
        "# own acks, commands and downlink. Anything not granted is denied: Mosquitto\n"
        "# drops a refused publish and closes the publisher's connection.\n"
        f"pattern write {p}/%u/records\n"
        f"pattern write {p}/%u/status\n"
        f"pattern read {p}/%u/ack\n"
        f"pattern read {p}/%u/command\n"
        f"pattern read {p}/%u/down\n"
        f"pattern write {p}/%u/downack\n"
        "# The relay reads every store's records, status and downlink answers, and\n"
        "# writes every store's acks, commands and downlink. A shared subscription\n"
        "# ($share/<group>/...) is checked against the topic after the group, so\n"
        "# these lines cover several relays sharing the load.\n"
        f"user {relay_user}\n"
        f"topic read {p}/+/records\n"
        f"topic read {p}/+/status\n"
        f"topic write {p}/+/ack\n"
        f"topic write {p}/+/command\n"
        f"topic write {p}/+/down\n"
        f"topic read {p}/+/downack\n"
        f"{ACL_END}{p}\n"
    )


def ensure_acl(acl_file: Path, prefix: str, relay_user: str) -> bool:
    """Put the block for `prefix` into the ACL file, replacing an older copy of it and
    leaving every other line alone. True when the file changed."""
    block = acl_block(prefix, relay_user).splitlines()
    begin, end = block[0], block[-1]
    with _locked(acl_file):
        lines = _read_lines(acl_file)
        if begin in lines and end in lines[lines.index(begin) :]:
            start = lines.index(begin)
            stop = lines.index(end, start) + 1
            new = [*lines[:start], *block, *lines[stop:]]
        else:
            head = lines or [
                "# Mosquitto ACL of the Tillbridge broker (acl_file in mosquitto.conf).",
                "# Lines before the first `user` line would apply to anonymous clients,",
                "# which this broker refuses (allow_anonymous false).",
            ]
            new = [*head, "", *block] if head[-1].strip() else [*head, *block]
        if new == lines:
            return False
        _replace(acl_file, "".join(f"{line}\n" for line in new))
    return True


def provision_store(
    store: str,
    *,
    broker_url: str,
    prefix: str,
    relay_user: str,
    password_file: Path,
    acl_file: Path,
    out: Path,
    agent_dir: str = DEFAULT_AGENT_DIR,
) -> Provisioned:
    """Give `store` a fresh password (rotating any old one), make sure the ACL covers
    it, and write its agent config and password file under `out/<store>/`."""
    _check(store, broker_url=broker_url, prefix=prefix, relay_user=relay_user)
    if not agent_dir.strip() or any(c in agent_dir for c in "\r\n\0"):
        raise ProvisionError(f"agent folder {agent_dir!r} is not a path")
    password = new_password()
    folder = out / store
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The store's copy first: if the broker's file cannot be written afterwards, the
    # broker still knows the old password and nothing is locked out.
    agent_password = folder / "mqtt_password"
    _replace(agent_password, password + "\n", mode=0o600)
    agent_config = folder / "agent.toml"
    _replace(agent_config, _agent_toml(store, broker_url, prefix, agent_dir), mode=0o644)
    acl_changed = ensure_acl(acl_file, prefix, relay_user)
    rotated = set_password(password_file, store, password)
    return Provisioned(
        store=store,
        rotated=rotated,
        password_file=password_file,
        acl_file=acl_file,
        acl_changed=acl_changed,
        agent_config=agent_config,
        agent_password=agent_password,
    )


def _check(store: str, *, broker_url: str, prefix: str, relay_user: str) -> None:
    if not STORE_ID.fullmatch(store) or store in (".", ".."):
        raise ProvisionError(
            f"store id {store!r} is not 1-64 letters, digits, '_', '.' or '-' (and not '.' or '..')"
        )
    if store == relay_user:
        raise ProvisionError(f"store id {store!r} is the relay's broker user name")
    if not _PREFIX.fullmatch(prefix):
        raise ProvisionError(f"topic prefix {prefix!r} is not valid (no '+', '#' or spaces)")
    match = _URL.fullmatch(broker_url)
    if match is None:
        raise ProvisionError(f"broker URL {broker_url!r} is not mqtts://host:port")
    scheme, host = match.group(1), match.group(2)
    if scheme == "mqtt" and host not in _LOOPBACK:
        raise ProvisionError(
            f"broker URL {broker_url!r} would send the store's password in clear: use mqtts://"
        )


def _agent_toml(store: str, broker_url: str, prefix: str, agent_dir: str) -> str:
    base = agent_dir.rstrip("/\\")
    tls = broker_url.startswith("mqtts://")
    lines = [
        f"## Tillbridge store agent of store {store}, from `tillbridge-central provision-store`.",
        f"## Copy this file and mqtt_password to {base}/ on the store PC (mqtt_password",
        "## readable by the agent's service user only), put the CA that signed the",
        "## broker's certificate there as ca.pem, add the POS export folders below, and",
        "## check with `tillbridge-agent config check --config agent.toml`.",
        "[agent]",
        f"store = {_toml_str(store)}",
        "",
        "[agent.broker]",
        f"url = {_toml_str(broker_url)}",
        f"username = {_toml_str(store)}",
        f"password_file = {_toml_str(f'{base}/mqtt_password')}",
    ]
    if tls:
        lines.append(f"ca_file = {_toml_str(f'{base}/ca.pem')}")
    lines += [
        f"topic_prefix = {_toml_str(prefix)}",
        "",
        "## One [[agent.sources]] table per folder the POS exports into, for example:",
        "# [[agent.sources]]",
        '# name = "xstore"',
        '# path = "C:/xstore/poslog-out"',
        '# format = "poslog"',
        '# include = ["**/*.xml"]',
    ]
    return "\n".join(lines) + "\n"


def _toml_str(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes, \uXXXX included).
    return json.dumps(value, ensure_ascii=False)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def _replace(path: Path, text: str, *, mode: int | None = None) -> None:
    """Write through a temporary file and a rename, so a crash leaves the old file and
    never half a new one. A file that existed keeps its mode and, where allowed, its
    owner and group (the broker must still be able to read it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        before: os.stat_result | None = path.stat()
    except FileNotFoundError:
        before = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        elif before is not None:
            os.chmod(tmp, before.st_mode & 0o7777)
        else:
            os.chmod(tmp, _FILE_MODE)
        if before is not None and hasattr(os, "chown"):
            _keep_owner(tmp, before)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _keep_owner(tmp: str, before: os.stat_result) -> None:
    try:
        os.chown(tmp, before.st_uid, before.st_gid)
    except PermissionError:
        with contextlib.suppress(PermissionError):
            os.chown(tmp, -1, before.st_gid)  # allowed when we are in that group


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of one file between concurrent provisioning runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: a single operator at a time
        yield
        return
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
