"""The agent as a Windows service, and the platform-neutral runner behind it.

`ServiceRunner` runs the daemon on a selector event loop (aiomqtt needs one on
Windows) in the calling thread until `stop()` is called from any other thread, which
is what the service control manager does on stop, preshutdown and shutdown. A stop ends
within `STOP_SECONDS` (the daemon is cancelled at that deadline), and the service
reports its progress meanwhile so Windows waits for it. A config or start failure is
written to the Event Log naming the key and the file. Paths are absolute: services
start in System32.

On Windows, `tillbridge-agent-service` with no arguments hosts the service; with
`install|update|remove|uninstall|start|stop|restart` (pywin32's command line, options
before the command) it manages it. `install` and `update` set delayed automatic start,
a description, the service SID (so ACLs can name `NT SERVICE\\TillbridgeAgent`), the
virtual account of that name unless `--username` is given, a preshutdown timeout, and
recovery actions (restart after 10 s, 30 s, then every 60 s) that also fire when the
service stops with an error code. `uninstall` stops the service first and leaves the
data. pywin32 is imported only on Windows; tests stand fakes in for its modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, load_agent_config
from common import settings
from common.logs import configure_logging
from common.redact import redact_text
from common.settings import ConfigError

__all__ = [
    "SERVICE_ACCOUNT",
    "SERVICE_NAME",
    "ServiceRunner",
    "default_config_path",
    "install_settings",
    "main",
    "report_progress",
]

SERVICE_NAME = "TillbridgeAgent"
SERVICE_DISPLAY = "Tillbridge store agent"
SERVICE_DESCRIPTION = (
    "Forwards the POS exports of this store to Tillbridge central. Data, logs and the "
    "outbox are in %ProgramData%\\Tillbridge."
)
SERVICE_ACCOUNT = f"NT SERVICE\\{SERVICE_NAME}"

STOP_SECONDS = 45.0  # the daemon is cancelled if it has not stopped by then
PROGRESS_SECONDS = 2.0  # stop-pending is reported again this often
WAIT_HINT_MS = 10_000  # how long Windows waits for the next report
PRESHUTDOWN_MS = 60_000  # Windows waits this long at shutdown (above STOP_SECONDS)
RESTART_DELAYS_MS = (10_000, 30_000, 60_000)

# winsvc.h values, named here so the install plan is the same on every platform.
SERVICE_NO_CHANGE = 0xFFFFFFFF
SERVICE_AUTO_START = 2
SERVICE_STOPPED = 1
SERVICE_STOP_PENDING = 3
SERVICE_ACCEPT_PRESHUTDOWN = 0x100
SERVICE_CONTROL_PRESHUTDOWN = 15
SERVICE_CONFIG_DESCRIPTION = 1
SERVICE_CONFIG_FAILURE_ACTIONS = 2
SERVICE_CONFIG_DELAYED_AUTO_START_INFO = 3
SERVICE_CONFIG_FAILURE_ACTIONS_FLAG = 4
SERVICE_CONFIG_SERVICE_SID_INFO = 5
SERVICE_CONFIG_PRESHUTDOWN_INFO = 7
SERVICE_SID_TYPE_UNRESTRICTED = 1
SC_ACTION_RESTART = 1
SC_MANAGER_ALL_ACCESS = 0xF003F
SERVICE_ALL_ACCESS = 0xF01FF

log = logging.getLogger("tillbridge.agent.service")

Main = Callable[[asyncio.Event], Awaitable[None]]
Daemon = Callable[[AgentConfig, Path], Main]
Report = Callable[[str], None]


def default_config_path() -> Path:
    """The service's config: `TILLBRIDGE_CONFIG`, else `%ProgramData%\\Tillbridge\\agent.toml`
    (the service runs on Windows only; absolute whatever the working folder)."""
    return settings.default_config_path("agent", windows=True)


def _agent_daemon(
    config: AgentConfig, config_file: Path
) -> Callable[[asyncio.Event], Awaitable[None]]:
    from agent.daemon import Agent

    return Agent(config, config_file=config_file).run


def _ignore(_: str) -> None:
    return None


class ServiceRunner:
    """Runs the daemon in this thread until `stop()`; thread-safe to stop.

    `report_error` receives each failure that keeps the service from running, as one
    text naming the file and the key (the Windows service writes it to the Event Log,
    where an operator looks when a service does not start)."""

    def __init__(
        self,
        config_file: Path,
        *,
        daemon: Daemon = _agent_daemon,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.SelectorEventLoop,
        report_error: Report = _ignore,
        stop_seconds: float = STOP_SECONDS,
    ) -> None:
        self.config_file = config_file.resolve()
        self._daemon = daemon
        self._loop_factory = loop_factory
        self._report_error = report_error
        self._stop_seconds = stop_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop_requested = threading.Event()
        self.started = threading.Event()
        self.finished = threading.Event()

    def run(self) -> int:
        """0 after a requested stop, 1 when the daemon failed, 2 for an invalid config."""
        try:
            return self._run()
        finally:
            self.finished.set()

    def _run(self) -> int:
        try:
            config = load_agent_config(self.config_file)
        except ConfigError as exc:
            for line in exc.problems:
                log.error("Invalid config; the service cannot start.", extra={"problem": line})
            self._report_error(
                "Invalid config; the service cannot start:\n" + "\n".join(exc.problems)
            )
            return 2
        try:
            configure_logging(
                level=config.logging.level,
                file=config.log_file,
                max_bytes=config.logging.max_bytes,
                backups=config.logging.backups,
                console=False,
            )
        except OSError as exc:
            self._report_error(
                f"The log file {config.log_file} cannot be written ({exc.strerror or exc}); "
                f"check logging.file and data_dir in {self.config_file}."
            )
            return 1
        main = self._daemon(config, self.config_file)

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._task = asyncio.current_task()
            self.started.set()
            if self._stop_requested.is_set():
                self._begin_stop()
            await main(self._stop)

        try:
            with asyncio.Runner(loop_factory=self._loop_factory) as runner:
                runner.run(serve())
        except asyncio.CancelledError:
            log.warning(
                "Agent service did not stop in time; stopped at the deadline.",
                extra={"seconds": self._stop_seconds},
            )
            return 0
        except Exception as exc:
            log.exception("Agent service stopped by an error.", extra={"error": str(exc)})
            self._report_error(
                f"The agent stopped by an error: {redact_text(str(exc)) or type(exc).__name__}"
                f" (config {self.config_file}; details in {config.log_file})"
            )
            return 1
        return 0

    def _begin_stop(self) -> None:
        """On the loop: ask the daemon to stop, and cancel it should it not by the deadline."""
        loop, stop, task = self._loop, self._stop, self._task
        if loop is None or stop is None or stop.is_set():
            return
        stop.set()
        if task is not None:
            loop.call_later(self._stop_seconds, task.cancel)

    def stop(self) -> None:
        """Ask the daemon to stop (from the service control thread or any other)."""
        self._stop_requested.set()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: it has stopped
                loop.call_soon_threadsafe(self._begin_stop)


def report_progress(
    finished: threading.Event,
    report: Callable[[], None],
    *,
    every: float = PROGRESS_SECONDS,
    limit: float = STOP_SECONDS + 10,
) -> bool:
    """Call `report` every `every` seconds until `finished` (True) or `limit` passed
    (False): what keeps Windows waiting for a service that is still stopping."""
    waited = 0.0
    while not finished.wait(every):
        report()
        waited += every
        if waited >= limit:
            return False
    return True


# -- the Windows service -----------------------------------------------------------------


def _service_class() -> Any:
    import servicemanager
    import win32serviceutil

    class TillbridgeAgentService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = SERVICE_DISPLAY
        _svc_description_ = SERVICE_DESCRIPTION

        def __init__(self, args: Any) -> None:
            super().__init__(args)
            self.runner = ServiceRunner(
                default_config_path(), report_error=servicemanager.LogErrorMsg
            )
            self._stopping = False

        def GetAcceptedControls(self) -> int:
            return int(super().GetAcceptedControls()) | SERVICE_ACCEPT_PRESHUTDOWN

        def SvcStop(self) -> None:
            if self._stopping:
                return
            self._stopping = True
            self.ReportServiceStatus(SERVICE_STOP_PENDING, waitHint=WAIT_HINT_MS)
            self.runner.stop()
            threading.Thread(
                target=report_progress,
                args=(
                    self.runner.finished,
                    lambda: self.ReportServiceStatus(SERVICE_STOP_PENDING, waitHint=WAIT_HINT_MS),
                ),
                kwargs={"every": PROGRESS_SECONDS},
                name="stop-progress",
                daemon=True,
            ).start()

        SvcShutdown = SvcStop

        def SvcOtherEx(self, control: int, event_type: int, data: Any) -> None:
            if control == SERVICE_CONTROL_PRESHUTDOWN:
                self.SvcStop()

        def SvcDoRun(self) -> None:
            servicemanager.LogInfoMsg(f"{SERVICE_DISPLAY} starting ({self.runner.config_file})")
            code = self.runner.run()
            if code:
                servicemanager.LogErrorMsg(f"{SERVICE_DISPLAY} stopped with exit code {code}")
                raise SystemExit(code)  # the SCM sees a failure and applies recovery
            servicemanager.LogInfoMsg(f"{SERVICE_DISPLAY} stopped")

    return TillbridgeAgentService


def install_settings() -> list[tuple[int, Any]]:
    """What `install` sets beyond pywin32's defaults, as ChangeServiceConfig2 levels."""
    actions = [(SC_ACTION_RESTART, delay) for delay in RESTART_DELAYS_MS]
    return [
        (SERVICE_CONFIG_DESCRIPTION, SERVICE_DESCRIPTION),
        (SERVICE_CONFIG_DELAYED_AUTO_START_INFO, True),
        (
            SERVICE_CONFIG_FAILURE_ACTIONS,
            {"ResetPeriod": 86_400, "RebootMsg": "", "Command": "", "Actions": actions},
        ),
        # Recovery also on a stop with an error code (exit 1 or 2), not only on a crash.
        (SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, True),
        (SERVICE_CONFIG_SERVICE_SID_INFO, SERVICE_SID_TYPE_UNRESTRICTED),
        (SERVICE_CONFIG_PRESHUTDOWN_INFO, PRESHUTDOWN_MS),
    ]


def _configure(win32service: Any, *, start_type: bool, account: bool) -> None:
    """Apply `install_settings`, automatic start and the virtual account to the service."""
    manager = win32service.OpenSCManager(None, None, SC_MANAGER_ALL_ACCESS)
    try:
        handle = win32service.OpenService(manager, SERVICE_NAME, SERVICE_ALL_ACCESS)
        try:
            win32service.ChangeServiceConfig(
                handle,
                SERVICE_NO_CHANGE,
                SERVICE_AUTO_START if start_type else SERVICE_NO_CHANGE,
                SERVICE_NO_CHANGE,
                None,
                None,
                0,
                None,
                SERVICE_ACCOUNT if account else None,
                "" if account else None,  # a virtual account has no password
                None,
            )
            for level, value in install_settings():
                win32service.ChangeServiceConfig2(handle, level, value)
        finally:
            win32service.CloseServiceHandle(handle)
    finally:
        win32service.CloseServiceHandle(manager)


_VALUED = frozenset(
    {"--password", "--username", "--startup", "--perfmonini", "--perfmondll", "--wait"}
)


def _command(argv: list[str]) -> tuple[str | None, set[str]]:
    """pywin32's command (`install`, …) wherever the options put it, and the options."""
    options: set[str] = set()
    args = iter(argv[1:])
    for arg in args:
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            options.add(name)
            if name in _VALUED and "=" not in arg:
                next(args, None)
            continue
        return arg, options
    return None, options


def _uninstall(win32serviceutil: Any) -> None:
    """Stop the service (when it runs), wait for it, then remove it; the data stays."""
    try:
        win32serviceutil.StopService(SERVICE_NAME)
    except Exception as exc:  # noqa: BLE001 - not running (or not installed: removal says so)
        print(f"{SERVICE_NAME} was not stopped: {exc}")
    else:
        try:
            win32serviceutil.WaitForServiceStatus(
                SERVICE_NAME, SERVICE_STOPPED, int(STOP_SECONDS + 15)
            )
        except Exception:  # noqa: BLE001 - removal still marks it for deletion
            print(f"{SERVICE_NAME} did not report stopped; removing it all the same")
    win32serviceutil.RemoveService(SERVICE_NAME)
    print(f"{SERVICE_NAME} removed; its data and logs stay in %ProgramData%\\Tillbridge")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the Windows service executable."""
    argv = list(sys.argv if argv is None else argv)
    if sys.platform != "win32":
        print("the Windows service host runs on Windows; use systemd elsewhere", file=sys.stderr)
        return 2
    import servicemanager
    import win32service
    import win32serviceutil

    cls = _service_class()
    if len(argv) == 1:  # pragma: no cover - the service control manager starts this
        servicemanager.Initialize()
        servicemanager.PrepareToHostSingle(cls)
        servicemanager.StartServiceCtrlDispatcher()
        return 0
    command, options = _command(argv)
    if command in ("uninstall", "remove"):
        _uninstall(win32serviceutil)
        return 0
    win32serviceutil.HandleCommandLine(cls, argv=argv)
    if command in ("install", "update"):
        _configure(
            win32service,
            start_type="--startup" not in options,
            account="--username" not in options,
        )
        print(
            f"{SERVICE_NAME}: delayed automatic start, restart on failure after "
            "10 s, 30 s, 60 s, running as "
            + ("the account given" if "--username" in options else SERVICE_ACCOUNT)
        )
    return 0
