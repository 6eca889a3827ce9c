"""Runs the four services as local child processes: ``briefxai up``, ``briefxai demo`` and the e2e tests.

Each service is ``sys.executable -m briefxai_<name>`` configured through its ``BRIEFXAI_<NAME>_*``
environment; the gateway is pointed at the other three and at a SQLite store in the data dir. A worker
service (embedding, facets, clustering) may run as several replicas (``replicas={"embedding": 2}``), each
on its own gRPC and HTTP ports, named ``embedding-1``, ``embedding-2``; the gateway gets the list
(``ipv4:127.0.0.1:p1,127.0.0.1:p2``) and round-robins over the replicas that are SERVING. A service
counts as ready when ``grpc.health.v1.Health/Check`` answers SERVING. Stopping sends SIGTERM (gateway
first, so running analyses wind down before their dependencies go), waits, then SIGKILLs stragglers.

:meth:`Suite.supervise` restarts a service (or replica) that dies while the others keep serving: after
``RestartPolicy.initial_backoff`` seconds, doubling up to ``max_backoff`` while it keeps dying before it
has served for ``stable_seconds``; after ``max_rapid_crashes`` such deaths in a row it gives up, and the
caller stops the suite. Each death and restart is written to the service's log and reported.

Children get their own session, so Ctrl-C reaches only the supervisor, which then stops them in order;
on Linux they also receive SIGTERM if the thread that started them ends (PR_SET_PDEATHSIG), so a
supervising thread lives until the suite is stopped.

Each child's stdout and stderr go through a pipe to ``<log dir>/<instance>.log``, written by a thread of
the supervisor through the same size rotation the services use for ``log_file``: rotated at the
service's ``log_max_mb``, ``log_backups`` older files kept (from the config file; defaults 100 MiB, 5).

On its first start in a data dir the suite writes two secrets there (mode 0600), kept for later starts:
``admin.key``, an API key the gateway stores as its bootstrap admin key and the CLI uses when given no
other, and ``service.token``, the service token every service gets (so the workers accept calls from this
gateway only). Readiness is judged by health checks, which need neither; over TLS when the config file
gives a service a certificate.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

if TYPE_CHECKING:
    from briefxai_common.config import TLSSettings

SERVICES = ("embedding", "facets", "clustering", "gateway")
WORKERS = ("embedding", "facets", "clustering")
STOP_ORDER = ("gateway", "clustering", "facets", "embedding")
DEFAULT_GRPC_PORTS = {"gateway": 50051, "embedding": 50052, "facets": 50053, "clustering": 50054}
DEFAULT_HTTP_PORTS = {"gateway": 9091, "embedding": 9092, "facets": 9093, "clustering": 9094}
# With --base-port B: gRPC ports B..B+3 and HTTP ports B+10..B+13, in the order gateway, embedding, facets, clustering.
PORT_ORDER = ("gateway", "embedding", "facets", "clustering")
HTTP_OFFSET = 10
BASE_PORT_ENV = "BRIEFXAI_BASE_PORT"
STORE_FILE = "gateway.db"
ADMIN_KEY_FILE = "admin.key"
SERVICE_TOKEN_FILE = "service.token"  # noqa: S105  a file name, not a secret
CHILD_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "GRPC_VERBOSITY": "ERROR",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


class SupervisorError(RuntimeError):
    """A service could not be started, did not become ready, or kept dying."""


@dataclass(frozen=True)
class ServicePlan:
    name: str
    host: str
    grpc_port: int
    http_port: int
    env: dict[str, str] = field(default_factory=dict)
    log_max_mb: float = 100.0
    log_backups: int = 5
    replica: int = 0  # 0: the service's only instance; 1..n: one of n replicas

    @property
    def instance(self) -> str:
        """``embedding`` for a single instance, ``embedding-2`` for the second of several replicas."""
        return f"{self.name}-{self.replica}" if self.replica else self.name

    @property
    def address(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host  # noqa: S104  maps a wildcard to loopback
        return f"[{host}]:{self.grpc_port}" if ":" in host else f"{host}:{self.grpc_port}"

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
        """The instance named ``name`` (``embedding-2``), or the first instance of service ``name``."""
        for plan in self.services:
            if name in (plan.instance, plan.name):
                return plan
        raise KeyError(name)

    def replicas(self, name: str) -> tuple[ServicePlan, ...]:
        """Every instance of service ``name``."""
        return tuple(plan for plan in self.services if plan.name == name)

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
    """True when a server could not bind ``port`` now.

    SO_REUSEADDR, as gRPC and aiohttp servers set it: connections in TIME-WAIT left by a process that
    just died do not count (the restarted server binds fine), a listening socket does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def parse_replicas(text: str) -> dict[str, int]:
    """``"embedding=2,facets=2"`` -> ``{"embedding": 2, "facets": 2}``, checked by :func:`check_replicas`."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not value.strip().lstrip("-").isdigit():
            raise SupervisorError(f"{item!r}: expected SERVICE=COUNT, e.g. embedding=2")
        if name in counts:
            raise SupervisorError(f"{name} is given twice")
        counts[name] = int(value)
    return check_replicas(counts)


def check_replicas(replicas: Mapping[str, int]) -> dict[str, int]:
    """Replica counts per service, refused when a name is unknown, a count is not positive, or the
    gateway is asked for more than one (its local store is SQLite, one writer)."""
    for name, count in replicas.items():
        if name not in SERVICES:
            raise SupervisorError(f"unknown service {name!r} (one of {', '.join(WORKERS)})")
        if count < 1:
            raise SupervisorError(f"{name}={count}: the count of replicas must be 1 or more")
        if name == "gateway" and count > 1:
            raise SupervisorError(
                "the gateway runs once locally: its store is SQLite, which one process writes. Several "
                "gateways need a shared PostgreSQL store (gateway.store_url) and a load balancer in front, "
                "as the Helm chart sets up"
            )
    return dict(replicas)


def plan_suite(
    data_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    base_port: int | None = None,
    config: str | Path | None = None,
    store_url: str | None = None,
    replicas: Mapping[str, int] | None = None,
) -> SuitePlan:
    """Ports, addresses and environment for the four services (and the replicas asked for).

    Ports: ``base_port`` > 0 → consecutive from it; ``base_port == 0`` → free ports picked now; ``None`` →
    each service's ``grpc_port``/``http_port`` from the config file, else the defaults (50051…, 9091…).
    A second or later replica takes the next gRPC port after the four services' highest (and the next
    HTTP port after theirs), in the order embedding, facets, clustering; ports that collide are refused.
    The store is ``store_url``, else the config file's ``gateway.store_url``, else SQLite in ``data_dir``.
    """
    data_path = Path(data_dir).resolve()
    config_path = Path(config).resolve() if config else None
    counts = {name: 1 for name in SERVICES} | check_replicas(replicas or {})
    sections = {name: _config_section(name, config_path) for name in SERVICES}
    extras = [(name, replica) for name in WORKERS for replica in range(2, counts[name] + 1)]
    if base_port == 0:
        ports = free_ports(2 * (len(SERVICES) + len(extras)), "127.0.0.1")
        keys = [(name, 1) for name in PORT_ORDER] + extras
        grpc_ports = dict(zip(keys, ports[: len(keys)], strict=True))
        http_ports = dict(zip(keys, ports[len(keys) :], strict=True))
    else:
        if base_port is not None:
            if not 1 <= base_port <= 65535 - HTTP_OFFSET - len(SERVICES):
                raise SupervisorError(f"base port {base_port} out of range")
            grpc_ports = {(name, 1): base_port + i for i, name in enumerate(PORT_ORDER)}
            http_ports = {(name, 1): base_port + HTTP_OFFSET + i for i, name in enumerate(PORT_ORDER)}
        else:
            grpc_ports = {
                (n, 1): int(sections[n].get("grpc_port") or DEFAULT_GRPC_PORTS[n]) for n in SERVICES
            }
            http_ports = {
                (n, 1): int(sections[n].get("http_port") or DEFAULT_HTTP_PORTS[n]) for n in SERVICES
            }
        next_grpc, next_http = max(grpc_ports.values()) + 1, max(http_ports.values()) + 1
        for offset, key in enumerate(extras):
            grpc_ports[key], http_ports[key] = next_grpc + offset, next_http + offset
    _check_port_plan(grpc_ports, http_ports, counts)

    store = (
        store_url or str(sections["gateway"].get("store_url") or "") or f"sqlite:///{data_path / STORE_FILE}"
    )
    plans: list[ServicePlan] = []
    for name in SERVICES:
        prefix = f"BRIEFXAI_{name.upper()}_"
        for replica in range(1, counts[name] + 1):
            key = (name, replica)
            env = {
                f"{prefix}HOST": host,
                f"{prefix}GRPC_PORT": str(grpc_ports[key]),
                f"{prefix}HTTP_PORT": str(http_ports[key]),
            }
            log_file = os.environ.get(f"{prefix}LOG_FILE") or str(sections[name].get("log_file") or "")
            if log_file and counts[name] > 1:  # one rotating file per process
                path = Path(log_file)
                env[f"{prefix}LOG_FILE"] = str(path.with_name(f"{path.stem}-{replica}{path.suffix}"))
            plans.append(
                ServicePlan(
                    name,
                    host,
                    grpc_ports[key],
                    http_ports[key],
                    env,
                    log_max_mb=float(sections[name].get("log_max_mb") or ServicePlan.log_max_mb),
                    log_backups=int(sections[name].get("log_backups", ServicePlan.log_backups)),
                    replica=replica if counts[name] > 1 else 0,
                )
            )
    gateway_env = next(plan for plan in plans if plan.name == "gateway").env
    for name in WORKERS:
        addresses = [_ip_address(plan) for plan in plans if plan.name == name]
        gateway_env[f"BRIEFXAI_GATEWAY_{name.upper()}_ADDRESS"] = _target(addresses)
    gateway_env["BRIEFXAI_GATEWAY_STORE_URL"] = store
    return SuitePlan(tuple(plans), data_path, store, config_path)


def _check_port_plan(
    grpc_ports: Mapping[tuple[str, int], int],
    http_ports: Mapping[tuple[str, int], int],
    counts: Mapping[str, int],
) -> None:
    owners: dict[int, list[str]] = {}
    for kind, ports in (("gRPC", grpc_ports), ("HTTP", http_ports)):
        for (name, replica), port in ports.items():
            instance = f"{name}-{replica}" if counts[name] > 1 else name
            owners.setdefault(port, []).append(f"{instance} {kind}")
    for port, names in sorted(owners.items()):
        if not 1 <= port <= 65535:
            raise SupervisorError(f"port {port} ({names[0]}) out of range")
        if len(names) > 1:
            raise SupervisorError(
                f"port {port} would serve {' and '.join(names)}; choose other ports "
                f"(--base-port N, or 0 for free ports)"
            )


def _ip_address(plan: ServicePlan) -> str:
    """``plan.address`` with its host as an IP literal, which a list of addresses needs."""
    host = plan.address.rsplit(":", 1)[0].strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host = str(socket.getaddrinfo(host, plan.grpc_port, type=socket.SOCK_STREAM)[0][4][0])
        except OSError as exc:
            raise SupervisorError(f"cannot resolve {host} for {plan.instance}: {exc}") from exc
    return f"[{host}]:{plan.grpc_port}" if ":" in host else f"{host}:{plan.grpc_port}"


def _target(addresses: Sequence[str]) -> str:
    from briefxai_common.channels import address_list

    try:
        return address_list(addresses)
    except ValueError as exc:
        raise SupervisorError(str(exc)) from exc


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
    started: float = field(default_factory=time.monotonic)

    def drain_output(self, timeout: float = 5.0) -> None:
        """Waits (up to ``timeout``) until what the child wrote so far is in its log."""
        self.pump.join(timeout)


def _write_line(log: logging.Handler, line: str) -> None:
    """One line into a child's log; ``handle`` takes the handler's lock (the supervisor writes too)."""
    log.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO, "levelname": "INFO"}))


def _pump(output: IO[bytes], log: logging.Handler) -> None:
    """Copies the child's output to its rotating log, line by line, until the child closes it."""
    with output:
        for raw in iter(output.readline, b""):
            _write_line(log, raw.decode("utf-8", errors="replace").rstrip("\n"))


@dataclass(frozen=True)
class RestartPolicy:
    """When :meth:`Suite.supervise` starts a dead service again, and when it gives up."""

    initial_backoff: float = 1.0  # seconds from a death to the restart
    max_backoff: float = 30.0  # the wait doubles per rapid death up to this
    stable_seconds: float = 60.0  # up this long: the next death starts again from initial_backoff
    max_rapid_crashes: int = 5  # this many deaths in a row, each within stable_seconds: give up
    ready_timeout: float = 300.0  # a restarted service not SERVING by then is killed (a death)

    def __post_init__(self) -> None:
        if not 0 <= self.initial_backoff <= self.max_backoff:
            raise ValueError("need 0 <= initial_backoff <= max_backoff")
        if self.max_rapid_crashes < 1 or self.stable_seconds <= 0 or self.ready_timeout <= 0:
            raise ValueError("max_rapid_crashes, stable_seconds and ready_timeout must be positive")


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
        self.children: dict[str, _Child] = {}  # by instance name
        self.restarts: Counter[str] = Counter()  # by instance name
        self.failure: str | None = None  # why a background supervisor gave up
        self._lock = threading.RLock()  # children are replaced by a supervising thread
        self._stopping = threading.Event()
        self._released = threading.Event()  # the supervising thread may end (its children are stopped)
        self._supervisor: threading.Thread | None = None
        self.admin_key_path = plan.data_dir / ADMIN_KEY_FILE
        self.service_token_path = plan.data_dir / SERVICE_TOKEN_FILE
        self.admin_key = ""  # read (or created) at start
        self.service_token = ""

    def __enter__(self) -> Suite:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def gateway_address(self) -> str:
        return self.plan.gateway_address

    def log_path(self, instance: str) -> Path:
        return self.log_dir / f"{instance}.log"

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
            self._check_ports(self.plan.services)
        self.plan.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        from briefxai_common.apikeys import generate_api_key

        self.admin_key = _secret_file(self.admin_key_path, generate_api_key)
        self.service_token = _secret_file(self.service_token_path, lambda: secrets.token_urlsafe(32))
        self._stopping.clear()
        self._released.clear()
        started = time.monotonic()
        try:
            for plan in self.plan.services:
                self.children[plan.instance] = self._spawn(plan)
            self._wait_ready(started + timeout, started, on_ready)
        except BaseException:
            self.stop()
            raise

    def _check_ports(self, services: Sequence[ServicePlan]) -> None:
        for plan in services:
            for kind, port in (("gRPC", plan.grpc_port), ("HTTP", plan.http_port)):
                if port_in_use(port):
                    raise SupervisorError(
                        f"port {port} ({plan.instance} {kind}) is already in use; is another suite running? "
                        f"choose other ports with --base-port N (or {BASE_PORT_ENV}), or 0 for free ports"
                    )

    def _spawn(self, plan: ServicePlan, log: logging.Handler | None = None) -> _Child:
        env = dict(os.environ)
        env.update(CHILD_ENV)
        if self.plan.config is not None:
            env["BRIEFXAI_CONFIG"] = str(self.plan.config)
        env.update(plan.env)
        env.update(self._security_env(plan))
        env.update(self.extra_env)
        from briefxai_common.logging import rotating_handler

        log_path = self.log_path(plan.instance)
        log = log or rotating_handler(log_path, plan.log_max_mb, plan.log_backups)
        _write_line(log, f"--- starting {plan.module} on {plan.address} at {time.ctime()}")
        prefix, preexec = _die_with_parent()
        try:
            process = subprocess.Popen(  # noqa: S603  our interpreter and module, no shell
                [*prefix, self.python, "-m", plan.module],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,
            )
        except OSError as exc:
            log.close()
            raise SupervisorError(f"cannot start {plan.module}: {exc}") from exc
        assert process.stdout is not None  # noqa: S101  narrows the type: stdout=PIPE
        pump = threading.Thread(
            target=_pump, args=(process.stdout, log), name=f"log-{plan.instance}", daemon=True
        )
        pump.start()
        return _Child(plan, process, log_path, log, pump)

    def service_tls(self, plan: ServicePlan) -> TLSSettings | None:
        """The TLS settings ``plan``'s process will have (config file, then its environment); None when
        they are invalid (the process will say why and exit)."""
        from briefxai_common.config import TLSSettings

        values = dict(_config_section(plan.name, self.plan.config).get("tls") or {})
        prefix = f"BRIEFXAI_{plan.name.upper()}_TLS__"
        for key, value in {**os.environ, **plan.env, **self.extra_env}.items():
            if key.upper().startswith(prefix):
                values[key[len(prefix) :].lower()] = value
        try:
            return TLSSettings.model_validate(values)
        except ValueError:
            return None

    def _security_env(self, plan: ServicePlan) -> dict[str, str]:
        """The service token for every service; the bootstrap admin key's file for the gateway."""
        prefix = f"BRIEFXAI_{plan.name.upper()}_"
        env = {f"{prefix}SERVICE_TOKEN": self.service_token}
        if plan.name == "gateway":
            env[f"{prefix}AUTH__BOOTSTRAP_ADMIN_KEY_FILE"] = str(self.admin_key_path.resolve())
        return env

    def _wait_ready(
        self, deadline: float, started: float, on_ready: Callable[[ServicePlan, float], None] | None
    ) -> None:
        pending = {
            name: _HealthProbe(child.plan.address, self.service_tls(child.plan))
            for name, child in self.children.items()
        }
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
        with self._lock:
            codes = {
                name: code
                for name, child in self.children.items()
                if (code := child.process.poll()) is not None
            }
            for name in codes:
                self.children[name].drain_output()
        return codes

    def pids(self) -> dict[str, int]:
        """The process id of each instance now (a restarted one has a new one)."""
        with self._lock:
            return {name: child.process.pid for name, child in self.children.items()}

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def supervise(
        self,
        policy: RestartPolicy | None = None,
        *,
        should_stop: Callable[[], bool] | None = None,
        on_event: Callable[[str], None] | None = None,
        poll: float = 0.5,
    ) -> None:
        """Restarts what dies (see :class:`RestartPolicy`) until :meth:`stop` or ``should_stop()``.

        Raises SupervisorError when a service keeps dying; the suite is then still to be stopped."""
        restarter = _Restarter(self, policy or RestartPolicy(), on_event)
        try:
            while not self._stopping.is_set() and not (should_stop is not None and should_stop()):
                restarter.check()
                self._stopping.wait(poll)
        finally:
            restarter.close()

    def supervise_in_background(
        self, policy: RestartPolicy | None = None, *, on_event: Callable[[str], None] | None = None
    ) -> None:
        """:meth:`supervise` in a thread until :meth:`stop`; when it gives up it records why in
        :attr:`failure` and stops the suite."""
        if self._supervisor is not None:
            raise SupervisorError("the suite is already supervised")

        def run() -> None:
            try:
                self.supervise(policy, on_event=on_event)
            except Exception as exc:  # recorded for the caller, and nothing keeps running unsupervised
                self.failure = str(exc) if isinstance(exc, SupervisorError) else f"supervisor failed: {exc!r}"
                self.stop()
            finally:
                self._released.wait()  # children it started get SIGTERM when this thread ends

        self._supervisor = threading.Thread(target=run, name="supervisor", daemon=True)
        self._supervisor.start()

    def stop(self, grace: float = 20.0) -> dict[str, int]:
        """SIGTERM in STOP_ORDER (gateway first), wait up to ``grace`` each, then SIGKILL. Returns exit codes."""
        self._stopping.set()
        codes: dict[str, int] = {}
        with self._lock:
            waves = [
                [c for c in self.children.values() if c.plan.name == "gateway"],
                [c for c in self.children.values() if c.plan.name != "gateway"],
            ]
            for wave in waves:
                for child in wave:
                    _signal(child.process, signal.SIGTERM)
                deadline = time.monotonic() + grace
                for child in wave:
                    try:
                        child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        _signal(child.process, signal.SIGKILL)
                        child.process.wait()
                    codes[child.plan.instance] = child.process.returncode
            for child in self.children.values():
                child.drain_output()
                child.log.close()
            self.children.clear()
        self._released.set()
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join()
        return codes


@dataclass
class _RestartState:
    backoff: float
    serving_since: float | None  # when it was last seen SERVING; None after a restart until it is
    crashes: int = 0  # deaths in a row, each within stable_seconds of being SERVING (or before)
    due: float | None = None  # when a dead instance is started again
    probe: _HealthProbe | None = None  # after a restart, until it answers SERVING
    ready_by: float = 0.0


class _Restarter:
    """One pass of :meth:`Suite.supervise` at a time: notices deaths, restarts when due, follows the
    restarted until SERVING."""

    def __init__(self, suite: Suite, policy: RestartPolicy, on_event: Callable[[str], None] | None) -> None:
        self.suite = suite
        self.policy = policy
        self.on_event = on_event
        self.states: dict[str, _RestartState] = {}

    def check(self) -> None:
        with self.suite._lock:
            if self.suite._stopping.is_set():
                return
            for instance, child in list(self.suite.children.items()):
                state = self.states.setdefault(
                    instance, _RestartState(self.policy.initial_backoff, serving_since=child.started)
                )
                now = time.monotonic()
                code = child.process.poll()
                if code is None:
                    self._follow(instance, child, state, now)
                elif state.due is None:
                    child.drain_output()
                    what = f"exited with {_exit_text(code)} after {now - child.started:.1f}s"
                    self._failed(instance, child, state, now, what)
                elif now >= state.due:
                    self._restart(instance, child, state, now)

    def _follow(self, instance: str, child: _Child, state: _RestartState, now: float) -> None:
        if state.probe is None:
            return
        if state.probe.serving():
            state.probe.close()
            state.probe = None
            state.serving_since = now
            self._event(child, f"{instance} is SERVING again (pid {child.process.pid})")
        elif now > state.ready_by:
            self._event(
                child, f"{instance} not SERVING {self.policy.ready_timeout:g}s after its restart; killing it"
            )
            _signal(child.process, signal.SIGKILL)

    def _failed(self, instance: str, child: _Child, state: _RestartState, now: float, what: str) -> None:
        """Counts a death or failed restart; schedules the next start, or gives up (SupervisorError)."""
        if state.probe is not None:
            state.probe.close()
            state.probe = None
        if state.serving_since is not None and now - state.serving_since >= self.policy.stable_seconds:
            state.crashes, state.backoff = 0, self.policy.initial_backoff
        state.serving_since = None
        state.crashes += 1
        if state.crashes >= self.policy.max_rapid_crashes:
            message = (
                f"{instance} {what}: failure {state.crashes} in a row, each within "
                f"{self.policy.stable_seconds:g}s of a start; giving up and stopping the suite"
            )
            self._event(child, message)
            tail = self.suite.log_tail(instance)
            raise SupervisorError(f"{message}\nlast lines of {child.log_path}:\n{tail}")
        delay = state.backoff
        state.due = now + delay
        state.backoff = min(self.policy.max_backoff, max(delay * 2, self.policy.initial_backoff))
        self._event(
            child,
            f"{instance} {what}; restarting it in {delay:g}s "
            f"(failure {state.crashes} in a row; giving up at {self.policy.max_rapid_crashes})",
        )

    def _restart(self, instance: str, child: _Child, state: _RestartState, now: float) -> None:
        plan = child.plan
        busy = [str(port) for port in (plan.grpc_port, plan.http_port) if port_in_use(port)]
        if busy:
            self._failed(instance, child, state, now, f"cannot be restarted: port {', '.join(busy)} in use")
            return
        self.suite.children[instance] = replacement = self.suite._spawn(plan, log=child.log)
        self.suite.restarts[instance] += 1
        state.due = None
        state.probe = _HealthProbe(plan.address, self.suite.service_tls(plan))
        state.ready_by = now + self.policy.ready_timeout
        self._event(
            replacement,
            f"{instance} restarted (pid {replacement.process.pid}, restart {self.suite.restarts[instance]})",
        )

    def _event(self, child: _Child, message: str) -> None:
        _write_line(child.log, f"--- supervisor: {message} at {time.ctime()}")
        if self.on_event is not None:
            self.on_event(message)

    def close(self) -> None:
        for state in self.states.values():
            if state.probe is not None:
                state.probe.close()
                state.probe = None


def _exit_text(code: int) -> str:
    """``code 3`` or ``signal SIGKILL`` (Popen reports a signal as a negative code)."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


class _HealthProbe:
    def __init__(self, address: str, tls: TLSSettings | None = None) -> None:
        from briefxai_common.healthcheck import probe_channel

        self.channel = probe_channel(address, tls)
        self.stub = health_pb2_grpc.HealthStub(self.channel)

    def serving(self) -> bool:
        try:
            response = self.stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    def close(self) -> None:
        self.channel.close()


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    """The secret in ``path`` (stripped), written there first (mode 0600, created exclusively so that a
    concurrent start keeps the first one) when the file does not exist."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(descriptor, "w") as file:
            file.write(make() + "\n")
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise SupervisorError(f"cannot read {path}: {exc}") from exc
    if not secret:
        raise SupervisorError(f"{path} is empty; delete it to have a new one made")
    return secret


def _signal(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)


@functools.cache
def _die_with_parent() -> tuple[list[str], Callable[[], None] | None]:
    """How a child asks Linux for SIGTERM when the thread that started it ends (PR_SET_PDEATHSIG): a
    command prefix, or a function to run in the child before exec.

    util-linux's ``setpriv --pdeathsig TERM`` sets it and execs the service (same pid), so Python needs
    no ``preexec_fn`` and starts the child with vfork: a plain fork() of a process with gRPC threads runs
    gRPC's at-fork handlers in the child, which now and then abort it before it execs (SIGABRT, "epoll_wait
    error: Bad file descriptor"). Without setpriv, prctl in a ``preexec_fn``; elsewhere than Linux, none."""
    if sys.platform != "linux":
        return [], None
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        return [setpriv, "--pdeathsig", "TERM", "--"], None
    return [], _prctl_pdeathsig


def _prctl_pdeathsig() -> None:
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
    """(instance, gRPC address, HTTP address) rows for printing."""
    rows = []
    for service in services:
        http_host = service.address.rsplit(":", 1)[0]
        rows.append((service.instance, service.address, f"http://{http_host}:{service.http_port}"))
    return rows
