"""The agent as a Windows service, and the platform-neutral runner behind it.

`ServiceRunner` runs the daemon on a selector event loop (aiomqtt needs one on
Windows) in the calling thread until `stop()` is called from any other thread, which
is what the service control manager does through `SvcStop`/`SvcShutdown`. Paths are
absolute: services start in System32.

On Windows, `tillbridge-agent-service` with no arguments hosts the service; with
`install|remove|start|stop|restart` it manages it (pywin32's command line). Install
also sets recovery actions: restart after 10 s, 30 s, then every 60 s.
pywin32 is imported only on Windows; everything else is tested on any platform.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, load_agent_config
from agent.contract.logs import configure_logging
from agent.contract.settings import ConfigError

__all__ = ["SERVICE_NAME", "ServiceRunner", "default_config_path", "main"]

SERVICE_NAME = "TillbridgeAgent"
SERVICE_DISPLAY = "Tillbridge store agent"
SERVICE_DESCRIPTION = "Forwards the POS exports of this store to Tillbridge central."

log = logging.getLogger("tillbridge.agent.service")

Main = Callable[[asyncio.Event], Awaitable[None]]
Daemon = Callable[[AgentConfig, Path], Main]


def default_config_path() -> Path:
    """`TILLBRIDGE_CONFIG`, else `%PROGRAMDATA%\\Tillbridge\\agent.toml` (absolute)."""
    configured = os.environ.get("TILLBRIDGE_CONFIG")
    if configured:
        return Path(configured).resolve()
    base = Path(os.environ.get("PROGRAMDATA", "C:/ProgramData"))
    return (base / "Tillbridge" / "agent.toml").resolve()


def _agent_daemon(
    config: AgentConfig, config_file: Path
) -> Callable[[asyncio.Event], Awaitable[None]]:
    from agent.daemon import Agent

    return Agent(config, config_file=config_file).run


class ServiceRunner:
    """Runs the daemon in this thread until `stop()`; thread-safe to stop."""

    def __init__(
        self,
        config_file: Path,
        *,
        daemon: Daemon = _agent_daemon,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.SelectorEventLoop,
    ) -> None:
        self.config_file = config_file.resolve()
        self._daemon = daemon
        self._loop_factory = loop_factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = threading.Event()
        self.started = threading.Event()

    def run(self) -> int:
        """0 after a requested stop, 1 when the daemon failed, 2 for an invalid config."""
        try:
            config = load_agent_config(self.config_file)
        except ConfigError as exc:
            for line in exc.problems:
                log.error("Invalid config; the service cannot start.", extra={"problem": line})
            return 2
        configure_logging(
            level=config.logging.level,
            file=config.log_file,
            max_bytes=config.logging.max_bytes,
            backups=config.logging.backups,
            console=False,
        )
        main = self._daemon(config, self.config_file)

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.started.set()
            if self._stop_requested.is_set():
                self._stop.set()
            await main(self._stop)

        try:
            with asyncio.Runner(loop_factory=self._loop_factory) as runner:
                runner.run(serve())
        except Exception as exc:
            log.exception("Agent service stopped by an error.", extra={"error": str(exc)})
            return 1
        return 0

    def stop(self) -> None:
        """Ask the daemon to stop (from the service control thread or any other)."""
        self._stop_requested.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)


def _service_class() -> Any:  # pragma: no cover - Windows only
    import servicemanager
    import win32service
    import win32serviceutil

    class TillbridgeAgentService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = SERVICE_DISPLAY
        _svc_description_ = SERVICE_DESCRIPTION

        def __init__(self, args: Any) -> None:
            super().__init__(args)
            self.runner = ServiceRunner(default_config_path())

        def SvcStop(self) -> None:
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
            self.runner.stop()

        SvcShutdown = SvcStop

        def SvcDoRun(self) -> None:
            servicemanager.LogInfoMsg(f"{SERVICE_DISPLAY} starting ({self.runner.config_file})")
            code = self.runner.run()
            if code:
                servicemanager.LogErrorMsg(f"{SERVICE_DISPLAY} stopped with exit code {code}")
                raise SystemExit(code)  # the SCM sees a failure and applies recovery
            servicemanager.LogInfoMsg(f"{SERVICE_DISPLAY} stopped")

    return TillbridgeAgentService


def _set_recovery() -> None:  # pragma: no cover - Windows only
    import win32service

    manager = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_ALL_ACCESS)
    try:
        handle = win32service.OpenService(manager, SERVICE_NAME, win32service.SERVICE_ALL_ACCESS)
        try:
            actions = [
                (win32service.SC_ACTION_RESTART, 10_000),
                (win32service.SC_ACTION_RESTART, 30_000),
                (win32service.SC_ACTION_RESTART, 60_000),
            ]
            win32service.ChangeServiceConfig2(
                handle,
                win32service.SERVICE_CONFIG_FAILURE_ACTIONS,
                {"ResetPeriod": 86_400, "RebootMsg": "", "Command": "", "Actions": actions},
            )
        finally:
            win32service.CloseServiceHandle(handle)
    finally:
        win32service.CloseServiceHandle(manager)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - Windows only
    """Entry point of the Windows service executable."""
    argv = list(sys.argv if argv is None else argv)
    if sys.platform != "win32":
        print("the Windows service host runs on Windows; use systemd elsewhere", file=sys.stderr)
        return 2
    import servicemanager
    import win32serviceutil

    cls = _service_class()
    if len(argv) == 1:
        servicemanager.Initialize()
        servicemanager.PrepareToHostSingle(cls)
        servicemanager.StartServiceCtrlDispatcher()
        return 0
    win32serviceutil.HandleCommandLine(cls, argv=argv)
    if argv[1] == "install":
        _set_recovery()
    return 0
