"""Shared pieces of the benchmarks: the machine, services as real processes, RSS/CPU sampling, py-spy,
sample conversations and a windowed caller that mimics the gateway's calls in flight."""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psutil

from briefxai.common.v1 import common_pb2
from briefxai_cli.client import MetadataInterceptor, to_proto
from briefxai_cli.inputs import ConversationRecord, Message
from briefxai_cli.supervisor import Suite, SuitePlan, plan_suite
from briefxai_common.service_auth import SERVICE_TOKEN_HEADER
from briefxai_sampledata import iter_conversations

REPO = Path(__file__).resolve().parents[1]
MAX_MESSAGE_BYTES = 512 * 1024 * 1024
MIB = 2**20
T = TypeVar("T")


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' (uncommitted changes)' if dirty else ''}"


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count() or 0,
        "usable_cpus": len(os.sched_getaffinity(0)),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "git": git_revision(),
    }


# --------------------------------------------------------------------------------------------------
# Conversations


def conversation_records(n: int, seed: int = 11) -> list[ConversationRecord]:
    """``n`` labelled sample conversations as the CLI's records (deterministic for ``(n, seed)``)."""
    records = []
    for line, item in enumerate(iter_conversations(n, seed), start=1):
        records.append(
            ConversationRecord(
                id=str(item["id"]),
                user_id=str(item.get("user_id", "")),
                messages=tuple(Message(m["role"], m["content"]) for m in item["messages"]),
                metadata={str(k): str(v) for k, v in (item.get("metadata") or {}).items()},
                line=line,
            )
        )
    return records


def conversation_protos(records: Sequence[ConversationRecord]) -> list[common_pb2.Conversation]:
    return [to_proto(record) for record in records]


def channel(address: str, service_token: str = "") -> grpc.Channel:
    """A channel to a service of a suite; a worker needs the suite's ``service_token`` on every call."""
    opened = grpc.insecure_channel(
        address,
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    if not service_token:
        return opened
    return grpc.intercept_channel(opened, MetadataInterceptor([(SERVICE_TOKEN_HEADER, service_token)]))


def windowed(calls: Sequence[Callable[[], T]], window: int) -> list[T]:
    """Runs ``calls`` with at most ``window`` in flight (as the gateway does downstream), in order."""
    if window <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=window) as pool:
        return list(pool.map(lambda call: call(), calls))


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------------------------------
# Services as real processes (the CLI's supervisor)


@contextmanager
def running_services(
    names: Sequence[str], extra_env: Mapping[str, str] | None = None, timeout: float = 600.0
) -> Iterator[Suite]:
    """Starts ``names`` (a subset of the four) as processes on free ports; stops them on exit."""
    with tempfile.TemporaryDirectory(prefix="briefxai-bench-") as data_dir:
        full = plan_suite(data_dir, base_port=0)
        plan = SuitePlan(tuple(full.service(n) for n in names), full.data_dir, full.store_url)
        suite = Suite(plan, extra_env=dict(extra_env or {}))
        suite.start(timeout=timeout, check_ports=False)  # SupervisorError carries the logs' last lines
        try:
            yield suite
        finally:
            codes = suite.stop()
            bad = {name: code for name, code in codes.items() if code != 0}
            if bad:
                print(f"warning: services exited with {bad}", file=sys.stderr)


def service_pids(suite: Suite) -> dict[str, int]:
    return {name: child.process.pid for name, child in suite.children.items()}


def _tree(pid: int) -> list[psutil.Process]:
    try:
        process = psutil.Process(pid)
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return []


def tree_rss(pid: int) -> int:
    total = 0
    for process in _tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for process in _tree(pid):
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


@dataclass
class ProcessSampler:
    """Samples the RSS (process and its children) of each service every ``interval`` s in a thread;
    also the CPU seconds each used between start and stop."""

    pids: dict[str, int]
    interval: float = 0.5
    peaks: dict[str, int] = field(default_factory=dict)
    peak_total: int = 0
    at_peak_total: dict[str, int] = field(default_factory=dict)  # each service when the sum peaked
    peak_total_at: float = 0.0  # seconds from start to that sample
    samples: int = 0
    _cpu_start: dict[str, float] = field(default_factory=dict)
    _cpu: dict[str, float] = field(default_factory=dict)
    _wall: float = 0.0
    _started: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> ProcessSampler:
        self._cpu_start = {name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}
        self._wall = self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self._wall = time.perf_counter() - self._wall
        self._cpu = {
            name: tree_cpu_seconds(pid) - self._cpu_start.get(name, 0.0) for name, pid in self.pids.items()
        }

    def _sample(self) -> None:
        values = {name: tree_rss(pid) for name, pid in self.pids.items()}
        for name, value in values.items():
            self.peaks[name] = max(self.peaks.get(name, 0), value)
        if sum(values.values()) > self.peak_total:
            self.peak_total = sum(values.values())
            self.at_peak_total = values
            self.peak_total_at = time.perf_counter() - self._started
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def summary(self) -> dict[str, Any]:
        return {
            "interval_seconds": self.interval,
            "samples": self.samples,
            "peak_rss_mib": {name: round(value / MIB, 1) for name, value in sorted(self.peaks.items())},
            "peak_rss_total_mib": round(self.peak_total / MIB, 1),
            "rss_at_total_peak_mib": {
                name: round(value / MIB, 1) for name, value in sorted(self.at_peak_total.items())
            },
            "total_peak_at_seconds": round(self.peak_total_at, 1),
            "cpu_seconds": {name: round(value, 1) for name, value in sorted(self._cpu.items())},
            "wall_seconds": round(self._wall, 2),
        }


# --------------------------------------------------------------------------------------------------
# py-spy: a low-rate, non-blocking sampling profile of each service during a run (when installed)


def find_py_spy(explicit: str | None) -> str | None:
    if explicit:
        return explicit if Path(explicit).is_file() else None
    beside_python = Path(sys.executable).with_name("py-spy")  # the venv's, when PATH lacks it
    return (
        os.environ.get("PY_SPY")
        or shutil.which("py-spy")
        or (str(beside_python) if beside_python.is_file() else None)
    )


@dataclass
class PySpyProfile:
    """``py-spy record --nonblocking --format raw`` of each pid until ``stop()``; summarises the
    collapsed stacks as the busiest leaf frames and the busiest frames of our own code per service."""

    binary: str
    pids: dict[str, int]
    rate: int = 10
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="briefxai-pyspy-")))
    _processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self) -> None:
        for name, pid in self.pids.items():
            command = [
                self.binary, "record", "--pid", str(pid), "--rate", str(self.rate), "--nonblocking",
                "--subprocesses", "--format", "raw", "--output", str(self.directory / f"{name}.txt"),
            ]  # fmt: skip
            self._processes[name] = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )

    def stop(self) -> dict[str, Any]:
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self._processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        summary: dict[str, Any] = {}
        for name in self._processes:
            path = self.directory / f"{name}.txt"
            if path.exists():
                summary[name] = summarise_collapsed(path.read_text(errors="replace"))
        shutil.rmtree(self.directory, ignore_errors=True)
        return summary


def _frame_name(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``func (module.py)``."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({Path(file).name})" if file else name


def summarise_collapsed(text: str, top: int = 6) -> dict[str, Any]:
    """Collapsed stacks (``frame;frame;... count``) -> total samples, top leaf frames and top frames
    of our own code (``briefxai_*``), each as a share of the samples (idle threads are not sampled)."""
    leaves: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        leaves[_frame_name(frames[-1])] += count
        own = [f for f in frames if "briefxai_" in f]
        if own:
            ours[_frame_name(own[-1])] += count
    share = (lambda c: round(100.0 * c / total, 1)) if total else (lambda c: 0.0)
    return {
        "samples": total,
        "top_leaf_frames": [[name, share(count)] for name, count in leaves.most_common(top)],
        "top_own_frames": [[name, share(count)] for name, count in ours.most_common(top)],
    }
