"""Runs the four services as local child processes: ``briefxai up``, ``briefxai demo`` and the e2e tests.

Each service is ``sys.executable -m briefxai_<name>`` configured through its ``BRIEFXAI_<NAME>_*``
environment; the gateway is pointed at the other three and at a SQLite store in the data dir. A service
counts as ready when ``grpc.health.v1.Health/Check`` answers SERVING. Stopping sends SIGTERM (gateway
first, so running analyses wind down before their dependencies go), waits, then SIGKILLs stragglers.

Children get their own session, so Ctrl-C reaches only the supervisor, which then stops them in order;
on Linux they also receive SIGTERM if the supervisor dies without cleaning up.

Each child's stdout and stderr go through a pipe to ``<log dir>/<service>.log``, written by a thread of
the supervisor through the same size rotation the services use for ``log_file``: rotated at the
service's ``log_max_mb``, ``log_backups`` older files kept (from the config file; defaults 100 MiB, 5).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICES = ("embedding", "facets", "clustering", "gateway")
STOP_ORDER = ("gateway", "clustering", "facets", "embedding")
DEFAULT_GRPC_PORTS = {"gateway": 50051, "embedding": 50052, "facets": 50053, "clustering": 50054}
DEFAULT_HTTP_PORTS = {"gateway": 9091, "embedding": 9092, "facets": 9093, "clustering": 9094}
# With --base-port B: gRPC ports B..B+3 and HTTP ports B+10..B+13, in the order gateway, embedding, facets, clustering.
PORT_ORDER = ("gateway", "embedding", "facets", "clustering")
HTTP_OFFSET = 10
BASE_PORT_ENV = "BRIEFXAI_BASE_PORT"
STORE_FILE = "gateway.db"
CHILD_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "GRPC_VERBOSITY": "ERROR",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


class SupervisorError(RuntimeError):
    """A service could not be started or did not become ready."""


@dataclass(frozen=True)
class ServicePlan:
    name: str
    host: str
    grpc_port: int
    http_port: int
    env: dict[str, str] = field(default_factory=dict)
    log_max_mb: float = 100.0
    log_backups: int = 5

    @property
    def address(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"{host}:{self.grpc_port}"

    @property
    def module(self) -> str:
        return f"briefxai_{self.name}"


@dataclass(frozen=True)
class SuitePlan:
    services: tuple[ServicePlan, ...]
    data_dir: Path
    store_url: str
    config: Path | None = None

    def service(self, name: str) -> ServicePlan:
        for plan in self.services:
            if plan.name == name:
                return plan
        raise KeyError(name)

    @property
    def gateway_address(self) -> str:
        return self.service("gateway").address

    @property
    def store_path(self) -> Path | None:
        """The SQLite file behind the gateway's store, when it is SQLite."""
        prefix = "sqlite:///"
        if self.store_url.startswith(prefix):
            return Path(self.store_url[len(prefix) :])
        return None


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free a moment ago (held together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def plan_suite(
    data_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    base_port: int | None = None,
    config: str | Path | None = None,
    store_url: str | None = None,
) -> SuitePlan:
    """Ports, addresses and environment for the four services.

    Ports: ``base_port`` > 0 → consecutive from it; ``base_port == 0`` → free ports picked now; ``None`` →
    each service's ``grpc_port``/``http_port`` from the config file, else the defaults (50051…, 9091…).
    The store is ``store_url``, else the config file's ``gateway.store_url``, else SQLite in ``data_dir``.
    """
    data_path = Path(data_dir).resolve()
    config_path = Path(config).resolve() if config else None
    sections = {name: _config_section(name, config_path) for name in SERVICES}
    if base_port == 0:
        ports = free_ports(2 * len(SERVICES), "127.0.0.1")
        grpc_ports = dict(zip(PORT_ORDER, ports[: len(SERVICES)], strict=True))
        http_ports = dict(zip(PORT_ORDER, ports[len(SERVICES) :], strict=True))
    elif base_port is not None:
        if not 1 <= base_port <= 65535 - HTTP_OFFSET - len(SERVICES):
            raise SupervisorError(f"base port {base_port} out of range")
        grpc_ports = {name: base_port + i for i, name in enumerate(PORT_ORDER)}
        http_ports = {name: base_port + HTTP_OFFSET + i for i, name in enumerate(PORT_ORDER)}
    else:
        grpc_ports = {n: int(sections[n].get("grpc_port") or DEFAULT_GRPC_PORTS[n]) for n in SERVICES}
        http_ports = {n: int(sections[n].get("http_port") or DEFAULT_HTTP_PORTS[n]) for n in SERVICES}

    store = (
        store_url or str(sections["gateway"].get("store_url") or "") or f"sqlite:///{data_path / STORE_FILE}"
    )
    plans: dict[str, ServicePlan] = {}
    for name in SERVICES:
        prefix = f"BRIEFXAI_{name.upper()}_"
        env = {
            f"{prefix}HOST": host,
            f"{prefix}GRPC_PORT": str(grpc_ports[name]),
            f"{prefix}HTTP_PORT": str(http_ports[name]),
        }
        plans[name] = ServicePlan(
            name,
            host,
            grpc_ports[name],
            http_ports[name],
            env,
            log_max_mb=float(sections[name].get("log_max_mb") or ServicePlan.log_max_mb),
            log_backups=int(sections[name].get("log_backups", ServicePlan.log_backups)),
        )
    gateway_env = plans["gateway"].env
    for name in ("embedding", "facets", "clustering"):
        gateway_env[f"BRIEFXAI_GATEWAY_{name.upper()}_ADDRESS"] = plans[name].address
    gateway_env["BRIEFXAI_GATEWAY_STORE_URL"] = store
    return SuitePlan(tuple(plans[name] for name in SERVICES), data_path, store, config_path)


def _config_section(name: str, config: Path | None) -> Mapping[str, Any]:
    """The service's section as the service reads it (the ``monitoring:`` block's ports included)."""
    if config is None:
        return {}
    from briefxai_common.config import ConfigError, effective_section

    try:
        return effective_section(name, config)
    except ConfigError as exc:
        raise SupervisorError(str(exc)) from exc


@dataclass
class _Child:
    plan: ServicePlan
    process: subprocess.Popen[bytes]
    log_path: Path
    log: logging.Handler
    pump: threading.Thread

    def drain_output(self, timeout: float = 5.0) -> None:
        """Waits (up to ``timeout``) until what the child wrote so far is in its log."""
        self.pump.join(timeout)


def _write_line(log: logging.Handler, line: str) -> None:
    log.emit(logging.makeLogRecord({"msg": line, "levelno": logging.INFO, "levelname": "INFO"}))


def _pump(output: IO[bytes], log: logging.Handler) -> None:
    """Copies the child's output to its rotating log, line by line, until the child closes it."""
    with output:
        for raw in iter(output.readline, b""):
            _write_line(log, raw.decode("utf-8", errors="replace").rstrip("\n"))


class Suite:
    """The running services. Use as a context manager, or call :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        plan: SuitePlan,
        *,
        extra_env: Mapping[str, str] | None = None,
        python: str = sys.executable,
        log_dir: Path | None = None,
    ) -> None:
        self.plan = plan
        self.extra_env = dict(extra_env or {})
        self.python = python
        self.log_dir = log_dir or plan.data_dir / "logs"
        self.children: dict[str, _Child] = {}

    def __enter__(self) -> Suite:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def gateway_address(self) -> str:
        return self.plan.gateway_address

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(
        self,
        timeout: float = 300.0,
        on_ready: Callable[[ServicePlan, float], None] | None = None,
        check_ports: bool = True,
    ) -> None:
        """Launches every service and returns once all are SERVING; stops them all on failure."""
        if self.children:
            raise SupervisorError("the suite is already started")
        if check_ports:
            self._check_ports()
        self.plan.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            for plan in self.plan.services:
                self.children[plan.name] = self._spawn(plan)
            self._wait_ready(started + timeout, started, on_ready)
        except BaseException:
            self.stop()
            raise

    def _check_ports(self) -> None:
        for plan in self.plan.services:
            for kind, port in (("gRPC", plan.grpc_port), ("HTTP", plan.http_port)):
                if port_in_use(port):
                    raise SupervisorError(
                        f"port {port} ({plan.name} {kind}) is already in use; is another suite running? "
                        f"choose other ports with --base-port N (or {BASE_PORT_ENV}), or 0 for free ports"
                    )

    def _spawn(self, plan: ServicePlan) -> _Child:
        env = dict(os.environ)
        env.update(CHILD_ENV)
        if self.plan.config is not None:
            env["BRIEFXAI_CONFIG"] = str(self.plan.config)
        env.update(plan.env)
        env.update(self.extra_env)
        from briefxai_common.logging import rotating_handler

        log_path = self.log_path(plan.name)
        log = rotating_handler(log_path, plan.log_max_mb, plan.log_backups)
        _write_line(log, f"--- starting {plan.module} on {plan.address} at {time.ctime()}")
        try:
            process = subprocess.Popen(
                [self.python, "-m", plan.module],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        except OSError as exc:
            log.close()
            raise SupervisorError(f"cannot start {plan.module}: {exc}") from exc
        assert process.stdout is not None
        pump = threading.Thread(
            target=_pump, args=(process.stdout, log), name=f"log-{plan.name}", daemon=True
        )
        pump.start()
        return _Child(plan, process, log_path, log, pump)

    def _wait_ready(
        self, deadline: float, started: float, on_ready: Callable[[ServicePlan, float], None] | None
    ) -> None:
        pending = {name: _HealthProbe(child.plan.address) for name, child in self.children.items()}
        try:
            while pending:
                for name in list(pending):
                    child = self.children[name]
                    code = child.process.poll()
                    if code is not None:
                        child.drain_output()
                        raise SupervisorError(
                            f"{child.plan.module} exited with code {code} before it was ready; "
                            f"last lines of {child.log_path}:\n{self.log_tail(name)}"
                        )
                    if pending[name].serving():
                        pending.pop(name).close()
                        if on_ready is not None:
                            on_ready(child.plan, time.monotonic() - started)
                if not pending:
                    break
                if time.monotonic() > deadline:
                    names = ", ".join(sorted(pending))
                    tails = "\n".join(f"--- {n}:\n{self.log_tail(n)}" for n in sorted(pending))
                    raise SupervisorError(f"not SERVING after {deadline - started:.0f}s: {names}\n{tails}")
                time.sleep(0.25)
        finally:
            for probe in pending.values():
                probe.close()

    def exited(self) -> dict[str, int]:
        """Services that have stopped on their own, with their exit codes (their last output logged)."""
        codes = {
            name: code for name, child in self.children.items() if (code := child.process.poll()) is not None
        }
        for name in codes:
            self.children[name].drain_output()
        return codes

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 20.0) -> dict[str, int]:
        """SIGTERM in STOP_ORDER (gateway first), wait up to ``grace`` each, then SIGKILL. Returns exit codes."""
        codes: dict[str, int] = {}
        waves = [("gateway",), tuple(n for n in STOP_ORDER if n != "gateway")]
        for wave in waves:
            children = [self.children[n] for n in wave if n in self.children]
            for child in children:
                _signal(child.process, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for child in children:
                try:
                    child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal(child.process, signal.SIGKILL)
                    child.process.wait()
                codes[child.plan.name] = child.process.returncode
        for child in self.children.values():
            child.drain_output()
            child.log.close()
        self.children.clear()
        return codes


class _HealthProbe:
    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = health_pb2_grpc.HealthStub(self.channel)

    def serving(self) -> bool:
        try:
            response = self.stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    def close(self) -> None:
        self.channel.close()


def _signal(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the parent dies (PR_SET_PDEATHSIG)."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)


def wait_for_any_exit(
    suite: Suite, poll: float = 0.5, should_stop: Callable[[], bool] | None = None
) -> dict[str, int]:
    """Blocks until a service exits on its own (returns them) or ``should_stop()`` is true (returns {})."""
    while True:
        exited = suite.exited()
        if exited:
            return exited
        if should_stop is not None and should_stop():
            return {}
        time.sleep(poll)


def describe(services: Sequence[ServicePlan]) -> list[tuple[str, str, str]]:
    """(service, gRPC address, HTTP address) rows for printing."""
    rows = []
    for service in services:
        http_host = service.address.rsplit(":", 1)[0]
        rows.append((service.name, service.address, f"http://{http_host}:{service.http_port}"))
    return rows
