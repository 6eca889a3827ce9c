"""Faults end to end, beyond the crashes of ``test_outages_e2e.py``: the four services as processes under
the supervisor, set up as the soak sets them up (``benchmarks.soak.FAULT_ENV``: batches of 20, deadlines of
5-6 s per embedding or facets call, breakers that open after 2 failures and try again after 2 s), the facets
service asking the scripted OpenAI-compatible server first and its heuristic provider after it.

- the soak runner itself, for 45 s of random faults (its short form for CI);
- the LLM answering 429 with Retry-After, 500s, hanging past the request timeout, malformed JSON, then
  recovering: the analysis succeeds with every conversation once, clustered as in a fault-free run, each
  conversation's LLM facets either the scripted ones or, where the LLM failed, the heuristic's (as many as
  the failovers counted);
- a hung embedding service (SIGSTOP, then SIGCONT): the gateway's breaker opens, refuses a failed
  half-open trial while the worker is still hung, closes through half-open once it is back, and the
  analysis succeeds exactly as a fault-free run with the same seed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.soak import RESTARTS, fault_env, outcome
from briefxai.common.v1 import common_pb2
from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli.client import GatewayClient, build_options
from briefxai_cli.inputs import ConversationRecord
from briefxai_cli.supervisor import Suite, plan_suite
from tests.e2e.checks import check_complete_results
from tests.e2e.conftest import START_TIMEOUT
from tests.e2e.support import REPO, generated
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway_process import until
from tests.support.scrape import metric_sum
from tests.support.scripted_llm import LLM_FAULTS, MODEL, PROVIDER, scripted_reply

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]
COUNT = 240
SEED = 5
LLM_FACETS = ("request", "task", "language", "sentiment", "concerning")  # the others are counts
# The LLM faults, in the order the server serves them: each kind more times than the provider's two
# attempts and its breaker's threshold of three.
FAULTS = {"rate_limited": 6, "server_error": 6, "hang": 4, "malformed_json": 4, "broken_body": 4}
# The facets calls get 30 s here, not the soak's 6 s: a call that LLM faults slow past its deadline would be
# made again, and its failovers counted twice.
MODULE_ENV = {"BRIEFXAI_GATEWAY_FACETS_DEADLINE_SECONDS": "30"}
HALF_OPEN_PATH = (("closed", "open"), ("open", "half_open"), ("half_open", "open"), ("half_open", "closed"))
Values = dict[str, dict[str, common_pb2.FacetValue]]


def test_the_soak_runner_finds_nothing_lost_duplicated_or_changed(tmp_path: Path) -> None:
    """``python -m benchmarks.soak`` for 45 s (a suite of its own; this test runs first, before the module's
    suite is started)."""
    summary_file = tmp_path / "soak.json"
    # Fault seed 343 draws, 4-16 s in: SIGKILL of the gateway, 9 malformed LLM replies, SIGSTOP of the
    # embedding service for 6.8 s (past its 5 s deadline); then more.
    command = [sys.executable, "-m", "benchmarks.soak", "--duration", "45s", "--seed", "343"]
    command += ["--gap", "3,8", "--conversations", "120", "--sets", "1", "--summary", str(summary_file)]
    command += ["--data-dir", str(tmp_path / "data")]
    env = dict(os.environ, GRPC_VERBOSITY="ERROR")
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1100, check=False
    )
    assert done.returncode == 0, f"{done.stdout[-6000:]}\n{done.stderr[-4000:]}"
    summary = json.loads(summary_file.read_text())
    assert summary["passed"], summary
    assert set(summary["faults_injected"]) == {"kill", "pause", "llm"}, summary
    assert summary["analyses_completed"] >= 1, summary
    assert summary["conversations_lost"] == summary["conversations_duplicated"] == summary["mismatches"] == 0
    assert "conversations lost:              0" in done.stdout


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(model=MODEL, chat_default=scripted_reply, hang_seconds=5.0).start_in_thread()
    yield fake
    fake.stop_thread()


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, llm: FakeOpenAI) -> Iterator[Suite]:
    plan = plan_suite(tmp_path_factory.mktemp("briefxai-faults"), base_port=0)
    running = Suite(plan, extra_env=fault_env(llm.base_url) | MODULE_ENV)
    running.start(timeout=START_TIMEOUT)
    running.supervise_in_background(RESTARTS)
    yield running
    codes = running.stop()
    assert running.failure is None, running.failure
    assert codes == {name: 0 for name in codes}, f"services did not stop cleanly: {codes}"


@pytest.fixture(scope="module")
def records() -> list[ConversationRecord]:
    return generated(COUNT, seed=21)


def analyse(
    suite: Suite, records: list[ConversationRecord], notes: set[str] | None = None
) -> tuple[gateway_pb2.Analysis, gateway_pb2.GetAnalysisResultsResponse]:
    with GatewayClient(suite.gateway_address, api_key=suite.admin_key) as client:
        analysis = client.create(records, build_options(seed=SEED))
        final = client.wait(
            analysis.id, lambda u: notes.update(u.analysis.warnings) if notes is not None else None
        )
        assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error.message
        results = client.results(final.id)
    check_complete_results(results, records)
    return final, results


@pytest.fixture(scope="module")
def fault_free(
    suite: Suite, llm: FakeOpenAI, records: list[ConversationRecord]
) -> gateway_pb2.GetAnalysisResultsResponse:
    assert llm.pending("chat") == 0
    return analyse(suite, records)[1]


def values(results: gateway_pb2.GetAnalysisResultsResponse) -> Values:
    return {r.conversation_id: {v.facet: v for v in r.facets} for r in results.conversations}


def test_llm_faults_fail_over_to_the_heuristic_and_recover(
    suite: Suite,
    llm: FakeOpenAI,
    records: list[ConversationRecord],
    fault_free: gateway_pb2.GetAnalysisResultsResponse,
) -> None:
    facets_http = suite.plan.service("facets").http_port

    def llm_requests(outcome: str) -> float:
        labels = {"provider": "openai", "model": MODEL, "outcome": outcome}
        return metric_sum(facets_http, "briefxai_llm_requests_total", labels)

    def failovers() -> float:
        labels = {"service": "facets", "from": PROVIDER, "to": "heuristic", "outcome": "ok"}
        return metric_sum(facets_http, "briefxai_failovers_total", labels)

    def transitions(source: str, target: str) -> float:
        labels = {"service": "facets", "breaker": "openai", "from": source, "to": target}
        return metric_sum(facets_http, "briefxai_circuit_breaker_transitions_total", labels)

    outcomes = ("rate_limited", "server_error", "timeout", "bad_response", "ok")
    requests_before = {name: llm_requests(name) for name in outcomes}
    failovers_before = failovers()
    breaker_before = {pair: transitions(*pair) for pair in HALF_OPEN_PATH}
    llm.script_chat(*(LLM_FAULTS[kind]() for kind, count in FAULTS.items() for _ in range(count)))

    _, results = analyse(suite, records)

    # Every fault was served; then the server answered again.
    assert llm.pending("chat") == 0
    requests = {name: llm_requests(name) - requests_before[name] for name in outcomes}
    assert requests["rate_limited"] >= FAULTS["rate_limited"], requests
    assert requests["server_error"] >= FAULTS["server_error"], requests
    assert requests["timeout"] >= FAULTS["hang"], requests
    assert requests["bad_response"] >= FAULTS["broken_body"], requests
    assert requests["ok"] >= COUNT // 2, requests  # malformed JSON content comes in a 200
    # The provider's breaker opened and closed again, through half-open.
    breaker = {pair: transitions(*pair) - breaker_before[pair] for pair in HALF_OPEN_PATH}
    assert breaker[("closed", "open")] >= 1 and breaker[("half_open", "closed")] >= 1, breaker

    # Clusters come from the embedded conversation text, never from facets: as in the fault-free run.
    assert outcome(results) == outcome(fault_free)
    reference, got = values(fault_free), values(results)
    assert {reference[c][f].provider for c in reference for f in LLM_FACETS} == {PROVIDER}
    failed_over = []
    for conversation_id, facets in got.items():
        assert not [v for v in facets.values() if v.failed], conversation_id
        providers = {facets[f].provider for f in LLM_FACETS}
        if providers == {PROVIDER}:
            assert facets == reference[conversation_id], conversation_id  # the scripted values
        else:
            assert providers == {"heuristic"}, (conversation_id, providers)
            failed_over.append(conversation_id)
    assert failed_over, "no conversation's facets failed over to the heuristic"
    assert len(failed_over) < COUNT, "the LLM never recovered"
    assert failovers() - failovers_before == len(failed_over) * len(LLM_FACETS)


def test_a_hung_worker_trips_the_breaker_which_recovers_through_half_open(
    suite: Suite, records: list[ConversationRecord], fault_free: gateway_pb2.GetAnalysisResultsResponse
) -> None:
    gateway_http = suite.plan.service("gateway").http_port

    def transitions(source: str, target: str) -> float:
        labels = {"service": "gateway", "breaker": "embedding", "from": source, "to": target}
        return metric_sum(gateway_http, "briefxai_circuit_breaker_transitions_total", labels)

    def moved(pair: tuple[str, str]) -> bool:
        return transitions(*pair) > before[pair]

    before = {pair: transitions(*pair) for pair in HALF_OPEN_PATH}
    pid = suite.pids()["embedding"]
    notes: set[str] = set()
    with GatewayClient(suite.gateway_address, api_key=suite.admin_key) as client:
        analysis = client.create(records, build_options(seed=SEED))
        os.kill(pid, signal.SIGSTOP)
        try:
            until(lambda: moved(("closed", "open")), "the embedding breaker to open", 60)
            # Half-open while the worker is still hung: the trial call times out and it opens again.
            until(lambda: moved(("half_open", "open")), "a failed half-open trial", 60)
        finally:
            os.kill(pid, signal.SIGCONT)
        final = client.wait(analysis.id, lambda u: notes.update(u.analysis.warnings))
        assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error.message
        results = client.results(final.id)
    check_complete_results(results, records)
    assert outcome(results) == outcome(fault_free)
    assert moved(("open", "half_open")) and moved(("half_open", "closed"))
    state = {"service": "gateway", "breaker": "embedding"}
    assert metric_sum(gateway_http, "briefxai_circuit_breaker_state", state) == 0  # closed
    assert any(note.startswith("waiting for the embedding service") for note in notes), notes
    assert suite.pids()["embedding"] == pid, "the hung worker was restarted, not resumed"
