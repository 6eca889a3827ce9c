"""``make soak DURATION=10m``: analyses of sample conversations under random faults, each checked against a
fault-free reference.

    python -m benchmarks.soak --duration 10m [--seed N] [--conversations 200] [--sets 2] [--no-llm]
                              [--gap 3,15] [--summary FILE] [--data-dir DIR]

The four services run as processes under the CLI's supervisor (:class:`briefxai_cli.supervisor.Suite`),
which starts a dead one again after a second. The facets service asks the scripted OpenAI-compatible
server first (``tests/support/fake_openai.py``, run in this process; ``--no-llm``: heuristic facets only)
and falls back to its heuristic provider. First, one fault-free analysis of each conversation set (its own
sample seed and analysis seed) is the reference. Then, until the duration is spent, analyses of those sets
run one after another through the gateway while a thread injects faults, one at a time, each once every
service is SERVING again and a random pause (``--gap``, uniform) has passed; the fault RNG's seed is
printed, and each fault as it happens:

- ``kill``: SIGKILL of a random service, the gateway included (the supervisor starts it again);
- ``pause``: SIGSTOP of a random worker for 2-8 s, then SIGCONT: a hung process. A pause of the embedding
  or facets service past the gateway's deadline for its calls (:data:`FAULT_ENV`: 5 and 6 s; breakers open
  after 2 failures) trips that worker's breaker, which recovers through half-open; the clustering call
  (120 s) waits the pause out;
- ``llm``: a burst of 3-10 LLM faults (429 with Retry-After, 500, a hang past the request timeout,
  malformed JSON), after which the server answers again.

Each analysis must SUCCEED (one that FAILED because a service stayed down past the gateway's
``outage_budget_seconds`` is counted apart, as expected), list every conversation it accepted exactly
once, and put each in the same cluster, withheld or not, at the same map point as the reference, in a
cluster tree of the same shape and sizes. Cluster names are not compared: they are written from the
request summaries, which an LLM fault hands to the heuristic provider. Each checked analysis is deleted;
at the end the store must hold the references, each once, and nothing else (a second analysis for one
request would be left over). The exit status is 1 when a conversation was lost or duplicated, a result
differs from the reference, an analysis failed for another reason, an analysis was lost or duplicated, the
supervisor gave up, or a service did not stop cleanly. The summary also counts the restarts and the
circuit breaker transitions the services logged.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from benchmarks.common import conversation_records
from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli.client import TERMINAL_STATES, GatewayClient, build_options, parse_duration, state_name
from briefxai_cli.inputs import ConversationRecord
from briefxai_cli.supervisor import WORKERS, RestartPolicy, Suite, plan_suite
from briefxai_common.healthcheck import check as health_check
from tests.support.fake_openai import FakeOpenAI
from tests.support.scripted_llm import LLM_FAULTS, MODEL, PROVIDER, facets_llm_env, scripted_reply

T = TypeVar("T")

BREAKER = {"FAILURE_THRESHOLD": "2", "OPEN_TIMEOUT_MS": "2000", "PROBE_INTERVAL_MS": "1000"}
#: The suite's settings under faults: small batches (many calls, checkpoints), no embedding cache (a
#: restarted service has none either), a gateway's lease that runs out soon after it is killed, deadlines
#: a paused worker overruns, breakers that open after two failures and try again after 2 s, and an outage
#: budget that a restart (the clustering service's takes longest) stays well within.
FAULT_ENV: dict[str, str] = {
    "BRIEFXAI_EMBEDDING_CACHE_MAX_MB": "0",
    "BRIEFXAI_GATEWAY_BATCH_SIZE": "20",
    "BRIEFXAI_GATEWAY_MAX_INFLIGHT_BATCHES": "2",
    "BRIEFXAI_GATEWAY_ANALYSIS_LEASE_SECONDS": "6",
    "BRIEFXAI_GATEWAY_ANALYSIS_HEARTBEAT_SECONDS": "2",
    "BRIEFXAI_GATEWAY_EMBEDDING_DEADLINE_SECONDS": "5",
    "BRIEFXAI_GATEWAY_FACETS_DEADLINE_SECONDS": "6",
    "BRIEFXAI_GATEWAY_CLUSTERING_DEADLINE_SECONDS": "120",
    "BRIEFXAI_GATEWAY_METADATA_DEADLINE_SECONDS": "3",
    "BRIEFXAI_GATEWAY_OUTAGE_BUDGET_SECONDS": "180",
    **{
        f"BRIEFXAI_GATEWAY_CIRCUIT_BREAKERS__{worker.upper()}__{key}": value
        for worker in WORKERS
        for key, value in BREAKER.items()
    },
}
#: The supervisor: a dead service is started again after 1 s (at most 5 s after rapid deaths). A service
#: that has served 2 s counts as stable again; a fault comes only once every service is SERVING, and
#: then no sooner than the shortest gap, so only a service that keeps dying on its own ends the soak.
RESTARTS = RestartPolicy(initial_backoff=1.0, max_backoff=5.0, stable_seconds=2.0, max_rapid_crashes=5)
SAMPLE_SEED = 11
PAUSE_SECONDS = (2.0, 8.0)
LLM_BURST = (3, 10)
START_TIMEOUT = 600.0
# gRPC codes of a gateway that is restarting, stopping or busy: the call is made again.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
OUTAGE_BUDGET_NOTE = "outage_budget_seconds"  # in the error of an analysis that waited out its budget
MAP_DECIMALS = 5


def fault_env(llm_base_url: str | None) -> dict[str, str]:
    """:data:`FAULT_ENV`, with the facets service pointed at the scripted LLM when there is one."""
    return {**FAULT_ENV, **(facets_llm_env(llm_base_url) if llm_base_url else {})}


class Clock:
    """Seconds since the soak started, for the log lines."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.start:7.1f}s] {message}", flush=True)


# --------------------------------------------------------------------------------------------------
# Results and their comparison


@dataclass(frozen=True)
class Outcome:
    """What must not change under faults: each conversation's cluster, withheld flag and map point, and
    the tree's shape and sizes (not the names)."""

    rows: dict[str, tuple[str, bool, float, float]]
    clusters: frozenset[tuple[str, int, int, str]]


@dataclass
class Check:
    lost: list[str]
    duplicated: int
    unexpected: list[str]
    differing: list[str]  # conversations placed otherwise than in the reference
    tree_differs: bool
    providers: Counter[str]  # request summaries by provider ("failed" for none)

    @property
    def mismatches(self) -> int:
        return len(self.differing) + len(self.unexpected) + int(self.tree_differs)


def outcome(results: gateway_pb2.GetAnalysisResultsResponse) -> Outcome:
    rows = {
        r.conversation_id: (
            r.cluster_id,
            r.withheld,
            round(r.point.x, MAP_DECIMALS),
            round(r.point.y, MAP_DECIMALS),
        )
        for r in results.conversations
    }
    clusters = frozenset(
        (c.cluster.id, c.cluster.level, c.cluster.size, c.cluster.parent_id) for c in results.clusters
    )
    return Outcome(rows, clusters)


def check(results: gateway_pb2.GetAnalysisResultsResponse, sent: Sequence[str], reference: Outcome) -> Check:
    """Each sent conversation listed exactly once, placed as in ``reference``."""
    counts = Counter(r.conversation_id for r in results.conversations)
    got = outcome(results)
    providers: Counter[str] = Counter(
        "failed" if v.failed else v.provider
        for r in results.conversations
        for v in r.facets
        if v.facet == "request"
    )
    return Check(
        lost=sorted(set(sent) - counts.keys()),
        duplicated=sum(n - 1 for n in counts.values() if n > 1),
        unexpected=sorted(counts.keys() - set(sent)),
        differing=sorted(c for c in set(sent) & counts.keys() if got.rows[c] != reference.rows.get(c)),
        tree_differs=got.clusters != reference.clusters,
        providers=providers,
    )


# --------------------------------------------------------------------------------------------------
# Calls to a gateway that may be restarting


def transient(exc: BaseException) -> bool:
    return isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call) and exc.code() in TRANSIENT


def retried(call: Callable[[], T], limit: float) -> T:
    """``call()``, made again while the gateway is away, for up to ``limit`` seconds."""
    retrying = Retrying(
        retry=retry_if_exception(transient),
        wait=wait_random_exponential(multiplier=0.5, max=5.0),
        stop=stop_after_delay(limit),
        reraise=True,
    )
    return retrying(call)


def wait_terminal(client: GatewayClient, analysis_id: str, limit: float) -> gateway_pb2.Analysis:
    """Polls GetAnalysis (through gateway restarts) until the analysis is terminal; TimeoutError after
    ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        analysis = retried(lambda: client.get(analysis_id), max(1.0, deadline - time.monotonic()))
        if analysis.state in TERMINAL_STATES:
            return analysis
        time.sleep(0.5)
    raise TimeoutError(f"analysis {analysis_id} not finished after {limit:g}s")


# --------------------------------------------------------------------------------------------------
# Faults


@dataclass
class Injector:
    """Injects one fault at a time into ``suite`` (see the module docstring) until ``stop`` is set."""

    suite: Suite
    rng: random.Random
    clock: Clock
    gap: tuple[float, float]
    fake: FakeOpenAI | None = None
    injected: Counter[str] = field(default_factory=Counter)  # by kind
    targets: Counter[str] = field(default_factory=Counter)  # "kill gateway", "pause facets", "llm hang"
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fault-injector", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            while not self.stop.wait(self.rng.uniform(*self.gap)):
                if self._all_serving():
                    self._inject()
        except Exception as exc:  # reported in the summary; the soak does not go on without faults
            self.error = exc
            self.clock.say(f"fault injector failed: {exc!r}")

    def _all_serving(self) -> bool:
        """Waits until every instance answers SERVING (False when stopped first)."""
        while not self.stop.is_set():
            if all(health_check(p.address, timeout=1.0)[0] for p in self.suite.plan.services):
                return True
            self.stop.wait(0.5)
        return False

    def _inject(self) -> None:
        kinds = ["kill", "pause"] + (["llm"] if self.fake is not None else [])
        kind = self.rng.choice(kinds)
        if kind == "kill":
            target = self.rng.choice([p.instance for p in self.suite.plan.services])
            pid = self.suite.pids()[target]
            self.clock.say(f"fault: SIGKILL {target} (pid {pid})")
            os.kill(pid, signal.SIGKILL)
        elif kind == "pause":
            target = self.rng.choice([p.instance for p in self.suite.plan.services if p.name in WORKERS])
            self._pause(target, self.rng.uniform(*PAUSE_SECONDS))
        else:
            assert self.fake is not None
            target = self.rng.choice(sorted(LLM_FAULTS))
            count = self.rng.randint(*LLM_BURST)
            self.clock.say(f"fault: the LLM answers the next {count} requests with {target}")
            self.fake.script_chat(*(LLM_FAULTS[target]() for _ in range(count)))
        self.injected[kind] += 1
        self.targets[f"{kind} {target}"] += 1

    def _pause(self, target: str, seconds: float) -> None:
        pid = self.suite.pids()[target]
        self.clock.say(f"fault: SIGSTOP {target} (pid {pid}) for {seconds:.1f}s")
        os.kill(pid, signal.SIGSTOP)
        try:
            self.stop.wait(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
        self.clock.say(f"SIGCONT {target}")


# --------------------------------------------------------------------------------------------------
# The soak


@dataclass(frozen=True)
class Options:
    duration: float
    seed: int
    conversations: int = 200
    sets: int = 2
    llm: bool = True
    gap: tuple[float, float] = (3.0, 15.0)
    data_dir: Path | None = None


@dataclass
class Summary:
    seed: int
    duration_seconds: float
    analyses_completed: int = 0
    analyses_failed: list[str] = field(default_factory=list)  # unexpected: each with its reason
    analyses_failed_outage_budget: list[str] = field(default_factory=list)  # expected
    analyses_lost: int = 0
    analyses_duplicated: int = 0
    faults_injected: dict[str, int] = field(default_factory=dict)
    faults_by_target: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    breaker_transitions: dict[str, int] = field(default_factory=dict)  # "gateway embedding closed->open"
    conversations_checked: int = 0
    conversations_lost: int = 0
    conversations_duplicated: int = 0
    mismatches: int = 0
    mismatch_notes: list[str] = field(default_factory=list)
    request_summaries: dict[str, int] = field(default_factory=dict)  # by provider (llm, heuristic)
    problems: list[str] = field(default_factory=list)  # the supervisor or the injector gave up, unclean stops
    logs: str = ""  # where the services' logs are kept (a failed soak's, or those under --data-dir)

    @property
    def passed(self) -> bool:
        return not (
            self.conversations_lost
            or self.conversations_duplicated
            or self.mismatches
            or self.analyses_failed
            or self.analyses_lost
            or self.analyses_duplicated
            or self.problems
        )

    def render(self) -> str:
        faults = sum(self.faults_injected.values())
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults_injected.items()))
        lines = [
            f"soak summary (fault seed {self.seed}, {self.duration_seconds:g}s of faults)",
            f"  analyses completed:              {self.analyses_completed}",
            f"  analyses failed:                 {len(self.analyses_failed)}",
            *(f"    - {reason}" for reason in self.analyses_failed),
            f"  failed past the outage budget:   {len(self.analyses_failed_outage_budget)} (expected)",
            *(f"    - {reason}" for reason in self.analyses_failed_outage_budget),
            f"  faults injected:                 {faults}" + (f" ({kinds})" if kinds else ""),
            *(f"    {target}: {n}" for target, n in sorted(self.faults_by_target.items())),
            "  service restarts:                "
            + (", ".join(f"{k} {n}" for k, n in sorted(self.restarts.items())) or "none"),
            "  breaker transitions:" + ("" if self.breaker_transitions else "             none"),
            *(f"    {key}: {n}" for key, n in sorted(self.breaker_transitions.items())),
            f"  conversations checked:           {self.conversations_checked}",
            f"  conversations lost:              {self.conversations_lost}",
            f"  conversations duplicated:        {self.conversations_duplicated}",
            f"  mismatches against the reference: {self.mismatches}",
            *(f"    - {note}" for note in self.mismatch_notes[:20]),
            f"  analyses lost / duplicated:      {self.analyses_lost} / {self.analyses_duplicated}",
            "  request summaries by provider:   "
            + (", ".join(f"{k} {n}" for k, n in sorted(self.request_summaries.items())) or "none"),
            *(f"  PROBLEM: {problem}" for problem in self.problems),
            *([f"  logs: {self.logs}"] if self.logs else []),
            f"result: {'PASS' if self.passed else 'FAIL'}",
        ]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["faults_total"] = sum(self.faults_injected.values())
        data["passed"] = self.passed
        return data


@dataclass(frozen=True)
class ConversationSet:
    records: list[ConversationRecord]
    seed: int  # the analysis seed
    reference: Outcome


class Soak:
    def __init__(self, suite: Suite, options: Options, clock: Clock, fake: FakeOpenAI | None) -> None:
        self.suite = suite
        self.options = options
        self.clock = clock
        self.summary = Summary(seed=options.seed, duration_seconds=options.duration)
        self.injector = Injector(suite, random.Random(options.seed), clock, options.gap, fake)
        self.fake = fake
        self.references_made: list[str] = []  # request ids of the reference analyses (kept)
        self.deleted: list[str] = []  # request ids of the checked analyses (deleted)
        self.providers: Counter[str] = Counter()
        self.limit = float(FAULT_ENV["BRIEFXAI_GATEWAY_OUTAGE_BUDGET_SECONDS"]) + 300.0

    def _analyse(
        self, client: GatewayClient, records: Sequence[ConversationRecord], seed: int, name: str
    ) -> tuple[gateway_pb2.Analysis, gateway_pb2.GetAnalysisResultsResponse | None]:
        """Creates (made again with the same request id while the gateway is away), follows to the end,
        and reads the results of a SUCCEEDED analysis."""
        request_id = str(uuid.uuid4())
        options = build_options(seed=seed, display_name=name)
        created = retried(lambda: client.create(records, options, request_id=request_id), self.limit)
        final = wait_terminal(client, created.id, self.limit)
        if self.fake is not None:
            self.fake.requests.clear()  # only its scripts matter here; a long soak would hold every prompt
        if final.state != gateway_pb2.ANALYSIS_STATE_SUCCEEDED:
            return final, None
        return final, retried(lambda: client.results(final.id), self.limit)

    def _delete(self, client: GatewayClient, analysis: gateway_pb2.Analysis) -> None:
        """Deletes a checked analysis (the store stays small over hours), through gateway restarts: NOT_FOUND
        after an attempt that failed in transit means that attempt went through."""
        deadline = time.monotonic() + self.limit
        interrupted = False
        while True:
            try:
                client.delete(analysis.id)
                break
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else None
                if interrupted and code is grpc.StatusCode.NOT_FOUND:
                    break
                if not transient(exc) or time.monotonic() > deadline:
                    raise
                interrupted = True
                time.sleep(1.0)
        self.deleted.append(analysis.request_id)

    def references(self, client: GatewayClient) -> list[ConversationSet]:
        sets = []
        for index in range(self.options.sets):
            records = conversation_records(self.options.conversations, SAMPLE_SEED + index)
            seed = index + 1
            final, results = self._analyse(client, records, seed, f"soak reference {index}")
            self.references_made.append(final.request_id)
            if results is None:
                raise RuntimeError(
                    f"the fault-free reference of set {index} ended {state_name(final.state)}: "
                    f"{final.error.message}"
                )
            sets.append(ConversationSet(records, seed, outcome(results)))
            self.clock.say(
                f"reference {index}: {len(records)} conversations, {len(results.clusters)} clusters"
            )
        return sets

    def one(self, client: GatewayClient, number: int, conversation_set: ConversationSet) -> None:
        records = conversation_set.records
        began = time.monotonic()
        summary = self.summary
        try:
            final, results = self._analyse(client, records, conversation_set.seed, f"soak {number}")
            self._delete(client, final)
        except (TimeoutError, grpc.RpcError) as exc:  # stuck, or the gateway away past the limit
            reason = f"analysis #{number}: {exc!r}"
            summary.analyses_failed.append(reason)
            self.clock.say(reason)
            return
        took = time.monotonic() - began
        if results is None:
            state = state_name(final.state)
            reason = f"analysis {final.id} (#{number}) {state}: {final.error.message}"
            if OUTAGE_BUDGET_NOTE in final.error.message:
                summary.analyses_failed_outage_budget.append(reason)
            else:
                summary.analyses_failed.append(reason)
            self.clock.say(reason)
            return
        found = check(results, [r.id for r in records], conversation_set.reference)
        summary.analyses_completed += 1
        summary.conversations_checked += len(records)
        summary.conversations_lost += len(found.lost)
        summary.conversations_duplicated += found.duplicated
        summary.mismatches += found.mismatches
        if found.lost:
            summary.mismatch_notes.append(f"#{number}: lost {found.lost[:5]}")
        if found.differing:
            summary.mismatch_notes.append(
                f"#{number}: {len(found.differing)} placed otherwise, e.g. {found.differing[:3]}"
            )
        if found.unexpected:
            summary.mismatch_notes.append(f"#{number}: unexpected ids {found.unexpected[:5]}")
        if found.tree_differs:
            summary.mismatch_notes.append(f"#{number}: the cluster tree differs from the reference")
        if results.total_conversations != len(records):
            summary.mismatches += 1
            summary.mismatch_notes.append(f"#{number}: total_conversations {results.total_conversations}")
        self.providers.update(found.providers)
        self.clock.say(
            f"analysis {final.id} (#{number}) SUCCEEDED in {took:.1f}s: {len(records)} conversations, "
            f"{len(found.lost)} lost, {found.duplicated} duplicated, {found.mismatches} mismatches"
        )

    def run(self) -> Summary:
        options = self.options
        with GatewayClient(self.suite.gateway_address, timeout=10.0, api_key=self.suite.admin_key) as client:
            sets = self.references(client)
            self.clock.say(f"faults for {options.duration:g}s from now (fault seed {options.seed})")
            until = time.monotonic() + options.duration
            self.injector.start()
            number = 0
            try:
                while time.monotonic() < until and self.suite.failure is None and self.injector.error is None:
                    number += 1
                    self.one(client, number, sets[number % len(sets)])
            finally:
                self.injector.finish()
            self._audit(client)
        self._finish()
        return self.summary

    def _audit(self, client: GatewayClient) -> None:
        """The store holds each reference exactly once and nothing else: an analysis left over is a second
        one created for a request (a retried create that was not recognised as the same request)."""
        listed = Counter(a.request_id for a in retried(lambda: list(client.list()), self.limit))
        expected = dict.fromkeys(self.references_made, 1)
        self.summary.analyses_lost = sum(1 for r in expected if listed[r] == 0)
        self.summary.analyses_duplicated = sum(max(0, n - expected.get(r, 0)) for r, n in listed.items())

    def _finish(self) -> None:
        summary = self.summary
        summary.faults_injected = dict(self.injector.injected)
        summary.faults_by_target = dict(self.injector.targets)
        summary.restarts = dict(self.suite.restarts)
        summary.request_summaries = {
            ("llm" if k == PROVIDER else k): n for k, n in sorted(self.providers.items())
        }
        if summary.analyses_completed == 0:
            summary.problems.append("no analysis completed under faults")
        if self.suite.failure is not None:
            summary.problems.append(f"the supervisor gave up: {self.suite.failure}")
        if self.injector.error is not None:
            summary.problems.append(f"the fault injector failed: {self.injector.error!r}")


def breaker_transitions(suite: Suite) -> dict[str, int]:
    """The circuit breaker transitions every instance logged (``circuit_breaker_state_changed``), across
    its restarts and log rotations, by ``"<instance> <breaker> <old>-><new>"``."""
    counts: Counter[str] = Counter()
    for plan in suite.plan.services:
        log = suite.log_path(plan.instance)
        for path in sorted(log.parent.glob(f"{log.name}*")):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{") and '"circuit_breaker_state_changed"' in line:
                    event = json.loads(line)
                    counts[f"{plan.instance} {event['breaker']} {event['old']}->{event['new']}"] += 1
    return dict(counts)


def soak(options: Options) -> Summary:
    """Starts the suite (and the scripted LLM), runs the soak, stops everything; the summary."""
    clock = Clock()
    fake = FakeOpenAI(model=MODEL, chat_default=scripted_reply, hang_seconds=5.0) if options.llm else None
    if fake is not None:
        fake.start_in_thread()
    data_dir = options.data_dir or Path(tempfile.mkdtemp(prefix="briefxai-soak-"))
    suite = Suite(
        plan_suite(data_dir, base_port=0), extra_env=fault_env(fake.base_url if fake is not None else None)
    )
    try:
        clock.say(f"starting the suite in {data_dir} (logs in {suite.log_dir})")
        suite.start(timeout=START_TIMEOUT)
        suite.supervise_in_background(RESTARTS, on_event=lambda message: clock.say(f"supervisor: {message}"))
        runner = Soak(suite, options, clock, fake)
        summary = runner.run()
    finally:
        codes = suite.stop()
        if fake is not None:
            fake.stop_thread()
    summary.breaker_transitions = breaker_transitions(suite)
    unclean = {name: code for name, code in codes.items() if code != 0}
    if unclean:
        summary.problems.append(f"services did not stop cleanly: {unclean}")
    if options.data_dir is None and summary.passed:
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        summary.logs = str(suite.log_dir)
    return summary


def parse_gap(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    gap = (float(low), float(high or low))
    if not 0 < gap[0] <= gap[1]:
        raise ValueError(f"--gap {text!r}: need 0 < MIN <= MAX")
    return gap


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--duration", default="10m", help="how long faults are injected: 45s, 10m, 1h")
    parser.add_argument(
        "--seed", type=int, default=None, help="the fault RNG's seed (default: from the clock)"
    )
    parser.add_argument("--conversations", type=int, default=200, help="conversations per analysis")
    parser.add_argument("--sets", type=int, default=2, help="conversation sets, each with its own reference")
    parser.add_argument("--no-llm", action="store_true", help="heuristic facets only: no LLM faults")
    parser.add_argument("--gap", default="3,15", help="seconds between faults, MIN,MAX (uniform)")
    parser.add_argument("--data-dir", type=Path, default=None, help="store and logs here (kept)")
    parser.add_argument("--summary", type=Path, default=None, help="also write the summary as JSON here")
    args = parser.parse_args(argv)
    try:
        duration = parse_duration(args.duration)
        gap = parse_gap(args.gap)
    except ValueError as exc:
        parser.error(str(exc))
    seed = args.seed if args.seed is not None else int(time.time()) % 1_000_000
    print(f"fault seed {seed} (again: --seed {seed})", flush=True)
    options = Options(
        duration=duration,
        seed=seed,
        conversations=args.conversations,
        sets=max(1, args.sets),
        llm=not args.no_llm,
        gap=gap,
        data_dir=args.data_dir,
    )
    summary = soak(options)
    print(summary.render(), flush=True)
    if args.summary is not None:
        args.summary.write_text(json.dumps(summary.as_json(), indent=2) + "\n")
    return 0 if summary.passed else 1


if __name__ == "__main__":
    sys.exit(main())
