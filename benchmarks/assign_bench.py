"""Section 8 (`assign`): new conversations into an existing analysis (AssignConversations).

All four services as processes on the embedded defaults (as in sections 4-6). One analysis of ``base``
sample conversations, then ``count`` new sample conversations (another seed, ids of their own) sent in
calls of ``call_size``, each call a new revision of the results. The figure the target reads is the
*assignment and store step* alone, as the gateway times it once per call
(``briefxai_stage_seconds{stage="assign"}``): the nearest base centroid of each conversation, the next
revision (counts, distributions, the privacy rule on what it adds) and its one transaction. The facets
and embedding of the new conversations, through the same services as the analysis's own, are left out
of it; the whole calls' rate, with them, is reported beside it. Also measured: the one-off computation
of the base centroids (``stage="centroids"``, in the first call, outside the step), the store's share
of the step (``store_save_revision`` and ``store_load_revision_state``), a replay of the first call with
its request id (the same answer, no new revision), and reading the newest revision back. The new
conversations come from the same generator as the analysed ones, so the share left unassigned is the
threshold rule's rate of turning away conversations like the analysed ones (the 99th percentile of
the members' own distances aims at about 1 %).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import Any

from benchmarks.common import conversation_records, running_services
from benchmarks.e2e import SEED, _delta, _scrape, one_analysis, scrape_stage_metrics
from briefxai_cli.client import GatewayClient
from briefxai_cli.supervisor import SERVICES

ASSIGN_SEED = SEED + 500
STORE_OPERATIONS = ("store_save_revision", "store_load_revision_state")


def scrape_store_seconds(port: int) -> dict[str, float]:
    """Seconds the gateway's store spent per operation (``briefxai_operation_duration_seconds``)."""
    found: dict[str, float] = {}
    for family in _scrape(port):
        for sample in family.samples:
            if sample.name != "briefxai_operation_duration_seconds_sum":
                continue
            operation = sample.labels.get("operation", "")
            if operation in STORE_OPERATIONS and sample.labels.get("service") == "gateway":
                found[operation] = found.get(operation, 0.0) + sample.value
    return found


def run(base: int, count: int, call_size: int) -> dict[str, Any]:
    """One base analysis, ``count`` new conversations assigned in calls of ``call_size``; the figures."""
    began = time.perf_counter()
    with running_services(SERVICES) as suite:
        ready = round(time.perf_counter() - began, 1)
        port = suite.plan.service("gateway").http_port
        with GatewayClient(suite.gateway_address, timeout=600.0, api_key=suite.admin_key) as client:
            print(f"  assign: base analysis of {base:,} conversations ...", file=sys.stderr, flush=True)
            analysis = one_analysis(
                client, conversation_records(base, ASSIGN_SEED), stream=True, label="bench-assign-base"
            )
            new = [replace(r, id=f"new-{r.id}") for r in conversation_records(count, ASSIGN_SEED + 1)]
            stages_before = scrape_stage_metrics(port)
            store_before = scrape_store_seconds(port)
            calls: list[dict[str, Any]] = []
            first = None
            for index, start in enumerate(range(0, count, call_size)):
                chunk = new[start : start + call_size]
                called = time.perf_counter()
                response = client.assign(analysis["id"], chunk, request_id=f"bench-assign-{index}")
                seconds = time.perf_counter() - called
                first = first or response
                calls.append(
                    {
                        "conversations": len(chunk),
                        "seconds": round(seconds, 3),
                        "revision": response.revision,
                        "unassigned": response.unassigned_count,
                        "withheld": response.withheld_count,
                        "released": response.released_count,
                    }
                )
            stages = _delta(scrape_stage_metrics(port), stages_before)
            store = scrape_store_seconds(port)
            store_seconds = {op: round(store.get(op, 0.0) - store_before.get(op, 0.0), 4) for op in store}
            assert first is not None
            replayed = time.perf_counter()
            replay = client.assign(analysis["id"], new[:call_size], request_id="bench-assign-0")
            replay_seconds = time.perf_counter() - replayed
            read = time.perf_counter()
            latest = client.results(analysis["id"])
            read_seconds = time.perf_counter() - read
            client.delete(analysis["id"])
    step_seconds = float(stages["seconds"].get("assign", 0.0))
    calls_seconds = sum(c["seconds"] for c in calls)
    unassigned = sum(c["unassigned"] for c in calls)
    row: dict[str, Any] = {
        "base_conversations": base,
        "base_seconds": analysis["seconds"],
        "conversations": count,
        "call_size": call_size,
        "calls": calls,
        "assign_step_seconds": round(step_seconds, 4),
        "conversations_per_second": round(count / step_seconds, 1) if step_seconds else None,
        "calls_seconds": round(calls_seconds, 2),
        "calls_conversations_per_second": round(count / calls_seconds, 1) if calls_seconds else None,
        "centroid_seconds": round(float(stages["seconds"].get("centroids", 0.0)), 4),
        "store_seconds": store_seconds,
        "k": latest.k,
        "base_clusters": sum(1 for c in latest.clusters if c.cluster.level == 0),
        "clusters": len(latest.clusters),
        "max_distance": round(first.max_distance, 4),
        "unassigned": unassigned,
        "unassigned_percent": round(100.0 * unassigned / count, 2) if count else 0.0,
        "withheld_after": latest.withheld_conversations,
        "revision": latest.revision,
        "total_after": latest.total_conversations,
        "replay_same_answer": replay == first,
        "replay_seconds": round(replay_seconds, 3),
        "results_read_seconds": round(read_seconds, 2),
        "suite_ready_seconds": ready,
    }
    if latest.total_conversations != base + count or latest.revision != len(calls):
        raise RuntimeError(
            f"assign: revision {latest.revision} holds {latest.total_conversations} conversations, "
            f"expected revision {len(calls)} with {base + count}"
        )
    print(
        f"  assign: {count:,} conversations in {len(calls)} calls onto {base:,}: assignment and store "
        f"{row['conversations_per_second']} conv/s ({step_seconds:.3f} s), whole calls "
        f"{row['calls_conversations_per_second']} conv/s; {row['unassigned_percent']}% unassigned "
        f"(threshold {row['max_distance']})",
        file=sys.stderr,
        flush=True,
    )
    return row
