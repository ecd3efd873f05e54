"""Config: the example loads, environment overrides, precise problems for bad files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.config import AgentConfig, load_agent_config
from central.config import CentralConfig, load_central_config
from common.settings import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tillbridge.toml"
    path.write_text(text)
    return path


def _problems(loader, path: Path) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        loader(path)
    return info.value.problems


def test_example_config_loads_for_both_programs() -> None:
    agent = load_agent_config(EXAMPLE)
    central = load_central_config(EXAMPLE)
    assert agent.store == "0042"
    assert agent.sources[0].format == "poslog"
    assert agent.broker.port == 1883
    assert central.web.listen == "127.0.0.1:8470"
    assert central.inbox_url.startswith("sqlite:///")


def _keys(model: type, prefix: str) -> list[str]:
    from pydantic import BaseModel

    out = []
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        out.append(f"{prefix}.{name}")
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        for candidate in inner:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                out += _keys(candidate, f"{prefix}.{name}")
    return out


@pytest.mark.parametrize(("model", "table"), [(AgentConfig, "agent"), (CentralConfig, "central")])
def test_every_key_is_documented_in_the_example(model: type, table: str) -> None:
    text = EXAMPLE.read_text()
    missing = []
    for dotted in _keys(model, table):
        section, _, key = dotted.rpartition(".")
        tables = {"broker", "sources", "outbox", "uplink", "logging", "inbox", "intake", "web"}
        tables |= {"delivery", "audit", "routing", "targets", "stores", "payments", "tax_codes"}
        tables |= {
            "recon",
            "limits",
            "downlink",
            "order_sources",
            "micros_sts",
            "reference",
            "feeds",
        }
        if key in tables:
            continue
        pattern = rf"^#? ?{re.escape(key)} = "
        # A table of named entries ([central.stores."ID"]) is documented by one example.
        table_header = rf"^#? ?\[\[?{re.escape(section)}[\].]"
        if not re.search(pattern, text, re.MULTILINE) or not re.search(
            table_header, text, re.MULTILINE
        ):
            missing.append(dotted)
    assert missing == []


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, '[agent]\nstore = "0042"\n[agent.broker]\nurl = "mqtt://a:1883"\n')
    monkeypatch.setenv("TILLBRIDGE_AGENT__BROKER__URL", "mqtts://broker.example.com:8883")
    monkeypatch.setenv("TILLBRIDGE_AGENT__BROKER__PASSWORD", "from-env")
    config = load_agent_config(path)
    assert config.broker.url == "mqtts://broker.example.com:8883"
    assert config.broker.tls
    assert config.broker.port == 8883
    assert config.broker.password is not None
    assert config.broker.password.get_secret_value() == "from-env"
    assert "from-env" not in repr(config)


def test_secret_is_read_from_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    path = _write(tmp_path, f'[agent]\nstore = "1"\n[agent.broker]\npassword_file = "{secret}"\n')
    config = load_agent_config(path)
    assert config.broker.password is not None
    assert config.broker.password.get_secret_value() == "s3cret"
    assert "s3cret" not in config.model_dump_json()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[agent]\nstore = "0042"\n[agent.broker]\npasword_file = "/x"\n',
            ["agent.broker.pasword_file: unknown key"],
        ),
        ('[agent]\nstore = "00/42"\n', ["agent.store: String should match pattern"]),
        ("[agent]\n", ["agent.store: required key is missing"]),
        ('[agent]\nstore = "1"\ntimezone = "Mars/Base"\n', ["agent.timezone: unknown time zone"]),
        (
            '[agent]\nstore = "1"\n[[agent.sources]]\nname = "a"\npath = "/x"\nformat = "xml"\n',
            ["agent.sources[0].format: Input should be"],
        ),
        (
            '[agent]\nstore = "1"\n[agent.broker]\npassword_file = "/nonexistent/pw"\n',
            ["agent.broker.password_file: file not found: /nonexistent/pw"],
        ),
        (
            '[agent]\nstore = "1"\n[agent.broker]\nurl = "http://x"\n',
            ["agent.broker.url: String should match pattern"],
        ),
        ('[agent]\nstore = "1"\nstatus_listen = "0.0.0.0:1"\n', ["binds to 127.0.0.1"]),
        ("[agent\nstore=1", ["not valid TOML"]),
        (
            '[agent]\nstore = "1"\n[agent.downlink]\nenabled = true\n',
            ["agent.downlink: writer `file` needs `folder`"],
        ),
        (
            '[agent]\nstore = "1"\n[agent.downlink]\nenabled = true\nwriter = "pos"\n',
            ["agent.downlink.writer: Input should be 'file' or 'micros_sts'"],
        ),
        (
            '[agent]\nstore = "1"\n[agent.downlink]\nenabled = true\nwriter = "micros_sts"\n'
            '[agent.downlink.micros_sts]\nurl = "https://sts/api/v1"\nrvc_ref = 4\n',
            [
                "agent.downlink: writer `micros_sts` needs "
                "[agent.downlink.micros_sts] org_short_name, loc_ref, token_file"
            ],
        ),
        (
            '[agent]\nstore = "1"\n[[agent.sources]]\nname = "pos"\npath = "/pos"\n'
            '[agent.downlink]\nenabled = true\nfolder = "/pos/orders"\n',
            ["agent: downlink.folder /pos/orders lies in source 'pos'"],
        ),
        ('[central]\nrelay_id = "x"\n', ["agent: the [agent] table is missing"]),
    ],
)
def test_invalid_agent_configs_name_the_file_and_key(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = _write(tmp_path, text)
    problems = _problems(load_agent_config, path)
    assert len(problems) == len(expected), problems
    for line, fragment in zip(problems, expected, strict=True):
        assert line.startswith(f"{path}: ")
        assert fragment in line


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    path = _write(tmp_path, '[agent]\nstore = "1"\nstoer = "2"\n[agent.outbox]\nmax_rows = 0\n')
    problems = _problems(load_agent_config, path)
    assert sorted(p.split(": ")[1] for p in problems) == ["agent.outbox.max_rows", "agent.stoer"]


def test_environment_errors_name_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, '[agent]\nstore = "1"\n')
    monkeypatch.setenv("TILLBRIDGE_AGENT__BROKER__KEEPALIVE", "soon")
    (line,) = _problems(load_agent_config, path)
    assert "agent.broker.keepalive" in line
    assert "TILLBRIDGE_AGENT__BROKER__KEEPALIVE" in line


def test_invalid_central_configs(tmp_path: Path) -> None:
    path = _write(tmp_path, '[central.inbox]\nurl = "mysql://x"\n[central.web]\nlisten = "x"\n')
    problems = _problems(load_central_config, path)
    assert any("central.inbox.url: use sqlite:///path" in p for p in problems)
    assert any("central.web.listen: use host:port" in p for p in problems)
    assert _problems(load_central_config, tmp_path / "missing.toml") == [
        f"{tmp_path / 'missing.toml'}: file not found"
    ]
