"""Sections 4-6: end-to-end analyses through the gateway, all four services as real processes.

The CLI's supervisor starts the suite on free ports with the embedded defaults (ONNX int8-static embeddings,
heuristic facets, SQLite store in a temporary folder); the CLI's client sends sample conversations,
either streamed (``UploadAnalysis``, batches of up to 1,000) or inline (one ``CreateAnalysis``), and
follows ``WatchAnalysis`` to the end. A run's time is from the first byte sent to SUCCEEDED; the
results are then read back (every page) and the analysis deleted. During each run the RSS of every
service (and its children) is sampled every 0.5 s and its CPU seconds counted; each streamed run is
profiled with py-spy when it is installed (10 Hz, non-blocking). Stage timings come from the watch stream
(when each stage finished) and from the gateway's ``briefxai_stage_seconds`` metric.

:func:`real_chats` is the same measured run on real human chats (``benchmarks.dev_data``), repeated to
the size asked for, on a suite of its own started with the embedding cache off: the copies' texts are
computed again, as new chats would be (only identical texts in one merged batch are shared, and the
dedupe counter says how many).
"""

from __future__ import annotations

import sys
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.common import (
    ProcessSampler,
    PySpyProfile,
    conversation_records,
    running_services,
    service_pids,
)
from benchmarks.common import channel as open_channel
from benchmarks.dev_data import DevSetUnavailable, as_records, load_dev_set, repeated
from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli.client import GatewayClient, build_options, stage_name, state_name
from briefxai_cli.inputs import ConversationRecord
from briefxai_cli.supervisor import SERVICES, Suite

SEED = 11
# The embedding service's counters (Prometheus sample name -> key in the results).
EMBEDDING_COUNTERS = {
    "briefxai_embedding_texts_total": "texts_requested",
    "briefxai_embedding_tokens_total": "tokens_computed",
    "briefxai_embedding_cache_hits_total": "cache_hits",
    "briefxai_embedding_cache_misses_total": "cache_misses",
    "briefxai_embedding_deduplicated_texts_total": "deduplicated",
}
# Run variants besides the cold runs on the defaults.
WARM_CACHE = "the same conversations again (embedding cache warm)"
CHEAP_TEXT = "embed_text first_user_message"
REAL_CHATS = "real chats (dev set repeated, embedding cache off)"
# The suite of the real-chat run: the vector cache is keyed by text, so repeated chats would be free.
CACHE_OFF_ENV = {"BRIEFXAI_EMBEDDING_CACHE_MAX_MB": "0"}
REAL_WARM_UP = 50  # generated conversations through the fresh suite before the measured run


def _scrape(port: int) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return text_string_to_metric_families(response.read().decode())


def scrape_stage_metrics(port: int) -> dict[str, dict[str, float]]:
    """The gateway's ``briefxai_stage_seconds`` sums/counts and processed counters, by stage."""
    found: dict[str, dict[str, float]] = {"seconds": {}, "units": {}, "conversations": {}}
    for family in _scrape(port):
        for sample in family.samples:
            stage = sample.labels.get("stage")
            if stage is None:
                continue
            if sample.name == "briefxai_stage_seconds_sum":
                found["seconds"][stage] = sample.value
            elif sample.name == "briefxai_stage_seconds_count":
                found["units"][stage] = sample.value
            elif sample.name == "briefxai_conversations_processed_total":
                found["conversations"][stage] = sample.value
    return found


def scrape_embedding_metrics(port: int) -> dict[str, dict[str, float]]:
    """The embedding service's counters that say how much work the model did (summed over labels)."""
    found: dict[str, float] = {}
    for family in _scrape(port):
        for sample in family.samples:
            if sample.name in EMBEDDING_COUNTERS:
                key = EMBEDDING_COUNTERS[sample.name]
                found[key] = found.get(key, 0.0) + sample.value
    return {"embedding": found}


def _delta(after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {
        kind: {stage: round(value - before[kind].get(stage, 0.0), 2) for stage, value in values.items()}
        for kind, values in after.items()
    }


class Timeline:
    """When each stage was first seen current and when it finished, from the watch stream."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.entered: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.updates = 0

    def __call__(self, update: gateway_pb2.WatchAnalysisResponse) -> None:
        now = round(time.perf_counter() - self.started, 2)
        self.updates += 1
        self.entered.setdefault(stage_name(update.analysis.stage), now)
        for progress in update.analysis.stages:
            if progress.total and progress.done >= progress.total:
                self.finished.setdefault(stage_name(progress.stage), now)

    def summary(self) -> dict[str, Any]:
        return {"stage_entered_at": self.entered, "stage_finished_at": self.finished, "updates": self.updates}


def one_analysis(
    client: GatewayClient,
    records: Sequence[ConversationRecord],
    *,
    stream: bool,
    label: str,
    embed_text: str | None = None,
) -> dict[str, Any]:
    """Creates one analysis, follows it to the end; returns its timings (raises if it did not succeed)."""
    began = time.perf_counter()
    timeline = Timeline(began)
    options = build_options(seed=1, display_name=label, embed_text=embed_text)
    analysis = client.create(records, options, stream=stream)
    created = time.perf_counter() - began
    final = client.wait(analysis.id, on_update=timeline)
    seconds = time.perf_counter() - began
    if final.state != gateway_pb2.ANALYSIS_STATE_SUCCEEDED:
        raise RuntimeError(f"analysis {label} ended {state_name(final.state)}: {final.error}")
    return {
        "id": analysis.id,
        "conversations": len(records),
        "upload": "UploadAnalysis (stream)" if stream else "CreateAnalysis (inline)",
        "create_seconds": round(created, 2),
        "seconds": round(seconds, 2),
        "conversations_per_second": round(len(records) / seconds, 1),
        "warnings": list(final.warnings),
        **timeline.summary(),
    }


def measured_run(
    suite: Suite,
    client: GatewayClient,
    records: Sequence[ConversationRecord],
    *,
    stream: bool,
    py_spy: str | None = None,
    variant: str = "",
    embed_text: str | None = None,
) -> dict[str, Any]:
    """One analysis with RSS/CPU sampling (and py-spy when given), results read back, then deleted.

    ``variant`` names a run that is not a cold run on the defaults (it is reported apart)."""
    label = f"bench-{len(records)}-{'stream' if stream else 'inline'}{'-' + variant if variant else ''}"
    http_port = suite.plan.service("gateway").http_port
    embedding_port = suite.plan.service("embedding").http_port
    before = scrape_stage_metrics(http_port)
    embedding_before = scrape_embedding_metrics(embedding_port)
    profile = PySpyProfile(py_spy, service_pids(suite)) if py_spy else None
    if profile is not None:
        profile.start()
    with ProcessSampler(service_pids(suite)) as sampler:
        row = one_analysis(client, records, stream=stream, label=label, embed_text=embed_text)
    if profile is not None:
        row["py_spy"] = profile.stop()
    row["variant"] = variant
    row["gateway_stage_metrics"] = _delta(scrape_stage_metrics(http_port), before)
    row["embedding_metrics"] = _delta(scrape_embedding_metrics(embedding_port), embedding_before)["embedding"]
    row["processes"] = sampler.summary()
    began = time.perf_counter()
    results = client.results(row["id"])
    row["results_read_seconds"] = round(time.perf_counter() - began, 2)
    row["results"] = {
        "clusters": len(results.clusters),
        "k": results.k,
        "k_rule": results.k_rule,
        "withheld_conversations": results.withheld_conversations,
        "conversations_returned": len(results.conversations),
    }
    if len(results.conversations) != len(records):
        raise RuntimeError(f"{label}: {len(results.conversations)} results for {len(records)} conversations")
    client.delete(row["id"])
    print(
        f"  e2e {label}: {row['seconds']} s, {row['conversations_per_second']} conv/s, "
        f"peak RSS {row['processes']['peak_rss_total_mib']} MiB",
        file=sys.stderr,
        flush=True,
    )
    return row


def concurrent_analyses(
    suite: Suite, client: GatewayClient, count: int, size: int, seed: int = SEED
) -> dict[str, Any]:
    """``count`` analyses of ``size`` conversations each, created at once (different conversations)."""
    batches = [conversation_records(size, seed + 1 + i) for i in range(count)]
    with ProcessSampler(service_pids(suite)) as sampler, ThreadPoolExecutor(max_workers=count) as pool:
        began = time.perf_counter()
        futures = [
            pool.submit(one_analysis, client, batch, stream=True, label=f"bench-concurrent-{i}")
            for i, batch in enumerate(batches)
        ]
        rows = [future.result() for future in futures]
        seconds = time.perf_counter() - began
    for row in rows:
        client.delete(row["id"])
    total = count * size
    print(f"  e2e {count} x {size} at once: {seconds:.1f} s, {total / seconds:.1f} conv/s", file=sys.stderr)
    return {
        "analyses": count,
        "conversations_each": size,
        "seconds": round(seconds, 2),
        "conversations_per_second": round(total / seconds, 1),
        "per_analysis_seconds": [row["seconds"] for row in rows],
        "processes": sampler.summary(),
    }


def embedding_model(suite: Suite) -> str:
    """What the running embedding service says it is, e.g. ``onnx / all-MiniLM-L6-v2 (int8)``."""
    from briefxai_embedding.settings import EmbeddingSettings

    with open_channel(suite.plan.service("embedding").address, suite.service_token) as ch:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(ch)
        info = stub.GetModelInfo(embedding_pb2.GetModelInfoRequest(), timeout=30)
    settings = EmbeddingSettings.load()
    precision = f" ({settings.onnx_precision})" if info.backend == "onnx" else ""
    return f"{info.backend} / {info.model}{precision}, dim {info.dim}, max {info.max_tokens} tokens"


def run(
    sizes: Sequence[int],
    *,
    inline_max: int,
    concurrent: tuple[int, int],
    budget_minutes: float,
    py_spy: str | None,
) -> dict[str, Any]:
    """Every size in ascending order, streamed; inline too up to ``inline_max``; then the concurrent
    analyses. Every cold run sends conversations the suite has not seen (the inline run another seed
    than the streamed one), so the embedding cache serves only texts that really repeat. At 10k (or
    the largest size up to 10k) two more streamed runs: the same conversations again (warm cache), and
    the cheapest embedded text (first user message), which also runs at the largest size. A size whose streamed run would take longer than
    ``budget_minutes`` (extrapolated linearly from the previous size) is skipped, with the reason
    recorded."""
    sizes = sorted(sizes)
    variants_at = max((n for n in sizes if n <= 10_000), default=sizes[0])
    report: dict[str, Any] = {"sizes_requested": list(sizes), "runs": [], "skipped": []}
    began = time.perf_counter()
    with running_services(SERVICES) as suite:
        report["suite_ready_seconds"] = round(time.perf_counter() - began, 1)
        report["embedding_model"] = embedding_model(suite)
        with GatewayClient(suite.gateway_address, timeout=600.0, api_key=suite.admin_key) as client:
            print("  e2e warm-up analysis (100 conversations) ...", file=sys.stderr, flush=True)
            one_analysis(client, conversation_records(100, SEED + 100), stream=True, label="bench-warm-up")
            rate: float | None = None
            for n in sizes:
                if rate is not None and n / rate > budget_minutes * 60:
                    reason = (
                        f"estimated {n / rate / 60:.0f} min at the {rate:.0f} conv/s measured at the previous "
                        f"size, over the {budget_minutes:g} min budget"
                    )
                    report["skipped"].append({"conversations": n, "reason": reason})
                    print(f"  e2e {n}: skipped ({reason})", file=sys.stderr)
                    continue
                records = conversation_records(n, SEED + n)
                streamed = measured_run(suite, client, records, stream=True, py_spy=py_spy)
                report["runs"].append(streamed)
                rate = float(streamed["conversations_per_second"])
                if n == variants_at:
                    report["runs"].append(
                        measured_run(suite, client, records, stream=True, variant=WARM_CACHE)
                    )
                del records
                if n <= inline_max:
                    inline = conversation_records(n, SEED + n + 1)
                    report["runs"].append(measured_run(suite, client, inline, stream=False))
                    del inline
                if n in (variants_at, sizes[-1]):
                    cheap = conversation_records(n, SEED + n + 2)
                    report["runs"].append(
                        measured_run(
                            suite, client, cheap, stream=True, variant=CHEAP_TEXT, embed_text="first"
                        )
                    )
                    del cheap
            count, size = concurrent
            if count > 0:
                report["concurrent"] = concurrent_analyses(suite, client, count, size)
    report["sizes_run"] = sorted({row["conversations"] for row in report["runs"]})
    return report


def model_work(row: dict[str, Any]) -> dict[str, Any]:
    """What the model really computed in a measured run, from the embedding service's counters."""
    metrics = row.get("embedding_metrics") or {}
    requested = float(metrics.get("texts_requested", 0.0))
    reused = float(metrics.get("cache_hits", 0.0)) + float(metrics.get("deduplicated", 0.0))
    computed = requested - reused
    tokens = float(metrics.get("tokens_computed", 0.0))
    conversations = int(row["conversations"])
    return {
        "texts_computed": round(computed),
        "texts_reused": round(reused),
        "tokens_per_conversation": round(tokens / conversations, 1) if conversations else 0.0,
        "tokens_per_computed_text": round(tokens / computed, 1) if computed else 0.0,
        "tokens_per_second": round(tokens / float(row["seconds"]), 1) if row.get("seconds") else 0.0,
    }


def real_chats(total: int, *, py_spy: str | None) -> dict[str, Any]:
    """``total`` real dev-set chats (cycled, each copy with its own ids) streamed through a fresh suite
    whose embedding cache is off, after a small generated warm-up; one measured run as in :func:`run`.

    Returns ``{"unavailable": reason, ...}`` when the dev set cannot be built here (no ``shared/``
    beside the repository, or no chitchat-dataset package): that is reported, not a failure."""
    try:
        dev = load_dev_set()
    except DevSetUnavailable as exc:
        print(f"  e2e real chats: not run, {exc}", file=sys.stderr, flush=True)
        return {"unavailable": str(exc), "conversations_requested": total}
    records = as_records(repeated(dev, total))
    began = time.perf_counter()
    with running_services(SERVICES, extra_env=CACHE_OFF_ENV) as suite:
        ready = round(time.perf_counter() - began, 1)
        model = embedding_model(suite)
        with GatewayClient(suite.gateway_address, timeout=600.0, api_key=suite.admin_key) as client:
            print(
                f"  e2e real chats: warm-up ({REAL_WARM_UP} generated conversations) ...",
                file=sys.stderr,
                flush=True,
            )
            one_analysis(
                client,
                conversation_records(REAL_WARM_UP, SEED + 200),
                stream=True,
                label="bench-warm-up-real",
            )
            row = measured_run(suite, client, records, stream=True, py_spy=py_spy, variant=REAL_CHATS)
    row.update(model_work(row))
    row.update(
        {
            "source": "BYU Chit Chat dev set (benchmarks.dev_data, reserved ids left out)",
            "dev_set_chats": len(dev),
            "unique_conversations": min(total, len(dev)),
            "copies": -(-total // len(dev)),
            "embedding_cache": "off (" + ", ".join(f"{k}={v}" for k, v in CACHE_OFF_ENV.items()) + ")",
            "embedding_model": model,
            "suite_ready_seconds": ready,
        }
    )
    print(
        f"  e2e real chats: {row['conversations']:,} conversations ({row['unique_conversations']:,} real "
        f"chats x{row['copies']}), {row['conversations_per_second']} conv/s, "
        f"{row['tokens_per_conversation']} tokens/conversation computed, "
        f"{row['texts_computed']:,} texts computed / {row['texts_reused']:,} deduplicated or cached",
        file=sys.stderr,
        flush=True,
    )
    return row
