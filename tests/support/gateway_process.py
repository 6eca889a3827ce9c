"""A gateway as a real process (``python -m briefxai_gateway --config FILE``) on free ports, with its
JSON log lines in a file and no downstream services (the gateway serves, degraded, without them):
for tests of signals (SIGHUP reloads, SIGKILL and restart on the same store and ports)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from briefxai.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from briefxai_common.apikeys import generate_api_key
from tests.support.http import http_get
from tests.support.ports import free_port

T = TypeVar("T")
LIMIT = 60.0


def until(probe: Callable[[], T | None], what: str, limit: float = LIMIT) -> T:
    """The first truthy ``probe()``, polled for up to ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class GatewayProcess:
    """One gateway process at a time on the same ports, store and log file (``start`` again after a
    ``kill`` is a restart); ``write`` sets its config file's ``gateway:`` section."""

    def __init__(self, tmp_path: Path) -> None:
        self.config = tmp_path / "briefxai.yaml"
        self.log = tmp_path / "gateway.log"
        self.grpc_port, self.http_port = free_port(), free_port()
        key_file = tmp_path / "admin.key"
        if not key_file.exists():
            key_file.write_text(generate_api_key() + "\n")
        #: The gateway's bootstrap admin key (authentication is on, as by default).
        self.admin_key = key_file.read_text().strip()
        self.base: dict[str, Any] = {
            "auth": {"bootstrap_admin_key_file": str(key_file)},
            "host": "127.0.0.1",
            "grpc_port": self.grpc_port,
            "http_port": self.http_port,
            "store_url": f"sqlite:///{tmp_path}/gateway.db",
            "log_file": str(self.log),
            "grace_period_seconds": 1,
            # Nothing listens there: the gateway serves (degraded) without its downstreams.
            "embedding_address": f"127.0.0.1:{free_port()}",
            "facets_address": f"127.0.0.1:{free_port()}",
            "clustering_address": f"127.0.0.1:{free_port()}",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.write()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def auth(self) -> list[tuple[str, str]]:
        """Call metadata that authenticates as the admin key."""
        return [("authorization", f"Bearer {self.admin_key}")]

    def write(self, **gateway: Any) -> None:
        self.config.write_text(json.dumps({"gateway": {**self.base, **gateway}}))  # JSON is YAML

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "briefxai_gateway", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        until(lambda: self.health().get("phase") == "serving", "the gateway to serve")

    def health(self) -> dict[str, Any]:
        try:
            status, body = http_get(self.http_port, "/health")
        except OSError:
            return {}
        return json.loads(body) if status in (200, 503) else {}

    def lines(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def list_analyses(self) -> list[gateway_pb2.Analysis]:
        with grpc.insecure_channel(self.address) as channel:
            reply = gateway_pb2_grpc.AnalysisServiceStub(channel).ListAnalyses(
                gateway_pb2.ListAnalysesRequest(), timeout=10, metadata=self.auth
            )
        return list(reply.analyses)

    def kill(self) -> None:
        """SIGKILL: no drain, no lease released."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> int:
        """SIGTERM; the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
