"""One analysis of a million conversations (GitHub issue 14 §5): what it costs, stage by stage.

``python -m benchmarks.million --n 1000000`` runs three sections (``--sections`` picks some):

- ``texts``: the generated set (``briefxai_sampledata``, streamed, never held) as the gateway would
  embed it: for each embed-text mode and token budget, how many distinct texts the embedding service
  would compute (the text cut at the budget by the model's tokenizer, as the service cuts it; identical
  texts are served by its cache and in-batch dedupe) and the generator's rate.
- ``clustering``: the clustering service alone (a real process) on ``n`` x 384 synthetic vectors (60
  planted topics, made chunk by chunk) through the sample-fit path of the gateway's pipeline: the seeded
  sample of the service's ``max_vectors`` streamed to ``StreamClusterEmbeddings``, then every other
  vector assigned to its nearest base centroid chunk by chunk (the pipeline's own functions). Wall
  seconds per phase, the service's peak RSS, this process's RSS, ARI against the planted topics.
- ``e2e``: the set written to a JSONL file (streamed), then streamed from it into ``UploadAnalysis`` of a
  suite of all four services as processes (the CLI's supervisor, as ``benchmarks.e2e``), followed to
  SUCCEEDED; every results page then read (and counted, not kept), and the analysis deleted. Peak RSS
  and CPU seconds per service (psutil, 0.5 s), when each stage finished (watch stream), the gateway's
  stage seconds, and the embedding service's own counters (texts computed and served from its cache or
  dedupe, tokens), so that the embed stage, which embedding replicas scale, is reported apart.

The gateway's ``max_conversations_per_analysis`` is raised to ``n`` for the run (its default is 200,000).
Figures go to ``benchmarks/results/million-<n>.json``; nothing is asserted about them.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmarks.common import MIB, REPO, ProcessSampler, load_average, machine_info, now_iso, running_services
from benchmarks.e2e import Timeline, embedding_model, scrape_embedding_metrics, scrape_stage_metrics
from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli.client import GatewayClient, build_options, state_name, to_proto
from briefxai_cli.inputs import ConversationRecord, Message
from briefxai_cli.supervisor import SERVICES

DATA_SEED = 14
DIM = 384
TOPICS = 60
CHUNK = 8192
UPLOAD_BATCH = 1000
# (mode, token budget) of the texts section; the gateway's default first.
TEXT_SETTINGS: tuple[tuple[str, int], ...] = (
    ("conversation", 64),
    ("user_messages", 64),
    ("first_user_message", 64),
    ("first_user_message", 32),
)
EMBED_TEXT_FLAG = {"first_user_message": "first", "user_messages": "user", "conversation": "conversation"}


def rss_mib() -> float:
    return round(psutil.Process().memory_info().rss / MIB, 1)


# --------------------------------------------------------------------------------------------------
# texts


def distinct_texts(n: int, seed: int, settings: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """Distinct embedded texts per (mode, budget) over ``n`` generated conversations, counted by a
    64-bit digest of each cut text (the texts themselves are not kept)."""
    from briefxai_embedding.onnx_export import bundled_model_path
    from briefxai_embedding.token_cut import TokenCutter
    from briefxai_gateway.embed_text import char_budget, embed_text
    from briefxai_gateway.models import Conversation, EmbedTextMode
    from briefxai_gateway.models import Message as GatewayMessage
    from briefxai_sampledata import iter_conversations

    cutter = TokenCutter.from_file(bundled_model_path() / "tokenizer.json")
    seen: dict[tuple[str, int], set[int]] = {s: set() for s in settings}
    batch: list[Conversation] = []
    generated = 0.0
    began = time.perf_counter()

    def flush() -> None:
        for mode, budget in settings:
            texts = [embed_text(c, EmbedTextMode(mode), char_budget(budget)).text for c in batch]
            for text in cutter.cut(texts, budget)[0]:
                digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
                seen[(mode, budget)].add(int.from_bytes(digest, "little"))
        batch.clear()

    stream = iter(iter_conversations(n, seed))
    while True:
        tick = time.perf_counter()
        item = next(stream, None)
        generated += time.perf_counter() - tick
        if item is None:
            break
        batch.append(
            Conversation(
                id=str(item["id"]),
                user_id=str(item.get("user_id", "")),
                messages=[GatewayMessage(m["role"], m["content"]) for m in item["messages"]],
            )
        )
        if len(batch) >= CHUNK:
            flush()
    flush()
    rows = [
        {
            "embed_text": mode,
            "token_budget": budget,
            "distinct": len(found),
            "share": round(len(found) / n, 4),
        }
        for (mode, budget), found in seen.items()
    ]
    return {
        "conversations": n,
        "data_seed": seed,
        "generator_conversations_per_second": round(n / generated, 1) if generated else 0.0,
        "seconds": round(time.perf_counter() - began, 1),
        "distinct_texts": rows,
    }


# --------------------------------------------------------------------------------------------------
# clustering alone


class Synthetic:
    """``n`` x 384 vectors around 60 planted topics (uniform centres in [-10, 10], sd 6, as
    ``tests.clustering.synthetic``), made chunk by chunk: rows [start, end) are the same whenever made."""

    def __init__(self, n: int, seed: int = 7) -> None:
        self.n = n
        self.seed = seed
        self.centres = np.random.default_rng([seed, 0]).uniform(-10, 10, size=(TOPICS, DIM))

    def chunk(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 1, start])
        topics = rng.integers(0, TOPICS, size=end - start)
        vectors = (self.centres[topics] + rng.normal(scale=6.0, size=(end - start, DIM))).astype("<f4")
        return vectors, topics


def cluster_alone(n: int, seed: int, env: dict[str, str]) -> dict[str, Any]:
    """The sample-fit path on synthetic vectors against a clustering service process."""
    from sklearn.metrics import adjusted_rand_score

    from briefxai_gateway.centroids import CentroidBuilder, nearest
    from briefxai_gateway.clients import GrpcClusteringClient
    from briefxai_gateway.models import ClusteringChunk, ClusteringInput, PackedBatch
    from briefxai_gateway.pipeline import fit_sample, within
    from briefxai_gateway.settings import GatewaySettings

    data = Synthetic(n)
    ranges = [(s, min(n, s + CHUNK)) for s in range(0, n, CHUNK)]

    def packed(vectors: np.ndarray) -> PackedBatch:
        return PackedBatch(vectors.tobytes(), DIM, len(vectors))

    async def run(address: str) -> dict[str, Any]:
        client = GrpcClusteringClient(GatewaySettings.load(clustering_address=address))
        limit = (await client.limits()).max_vectors
        sample = fit_sample(n, limit, seed) if n > limit else np.arange(n, dtype=np.int64)

        async def chunks() -> AsyncIterator[ClusteringChunk]:
            for start, end in ranges:
                keep = within(sample, start, end)
                vectors, topics = data.chunk(start, end)
                yield ClusteringChunk(
                    vectors=packed(vectors[keep - start]),
                    ids=[f"c-{o:08d}" for o in keep.tolist()],
                    user_ids=[f"u-{o % max(1, n // 3)}" for o in keep.tolist()],
                    texts=[f"question about topic {t}" for t in topics[keep - start].tolist()],
                )

        began = time.perf_counter()
        output = await client.cluster(ClusteringInput(len(sample), chunks, None, None, None, None, seed=seed))
        fit_seconds = time.perf_counter() - began
        base_ids = [c.id for c in output.clusters if c.level == 0]
        row_of = {cid: i for i, cid in enumerate(base_ids)}
        labels = np.full(n, -1, dtype=np.int32)
        labels[sample] = [-1 if withheld else row_of[cid] for _, cid, withheld in output.assignments]
        # Making the synthetic chunks again is timed apart: the gateway reads them from its store instead.
        generate_seconds = 0.0
        began = time.perf_counter()
        builder = CentroidBuilder(base_ids)
        for start, end in ranges:
            keep = within(sample, start, end)
            tick = time.perf_counter()
            vectors = data.chunk(start, end)[0]
            generate_seconds += time.perf_counter() - tick
            builder.add(labels[keep].tolist(), packed(vectors[keep - start]))
        ids, matrix = builder.unit_centroids()
        rows = np.array([row_of[cid] for cid in ids], dtype=np.int64)
        centroid_seconds = time.perf_counter() - began - generate_seconds
        generate_seconds = 0.0
        began = time.perf_counter()
        topics = np.empty(n, dtype=np.int64)
        for start, end in ranges:
            tick = time.perf_counter()
            vectors, topics[start:end] = data.chunk(start, end)
            generate_seconds += time.perf_counter() - tick
            rest = np.setdiff1d(np.arange(start, end), within(sample, start, end), assume_unique=True)
            found, _ = nearest(matrix, packed(vectors[rest - start]))
            labels[rest] = rows[found]
        assign_seconds = time.perf_counter() - began - generate_seconds
        await client.downstream.close()
        reported = labels >= 0
        return {
            "max_vectors": limit,
            "fitted": len(sample),
            "k": output.k,
            "k_rule": output.k_rule,
            "base_algorithm": output.base_algorithm,
            "map_algorithm": output.map_algorithm,
            "clusters": len(output.clusters),
            "withheld": int((~reported).sum()),
            "fit_seconds_with_stream": round(fit_seconds, 2),
            "centroid_pass_seconds": round(centroid_seconds, 2),
            "assign_seconds": round(assign_seconds, 2),
            "assign_vectors_per_second": round((n - len(sample)) / assign_seconds, 1)
            if assign_seconds
            else 0.0,
            "ari_vs_planted": round(float(adjusted_rand_score(topics[reported], labels[reported])), 3),
        }

    with running_services(["clustering"], extra_env=env) as suite:
        pid = suite.children["clustering"].process.pid
        with ProcessSampler({"clustering": pid}) as sampler:
            began = time.perf_counter()
            row = asyncio.run(run(suite.plan.service("clustering").address))
            row["seconds"] = round(time.perf_counter() - began, 2)
    row.update(
        {
            "vectors": n,
            "dim": DIM,
            "planted_topics": TOPICS,
            "clustering_service": sampler.summary(),
            "benchmark_process_rss_mib": rss_mib(),
        }
    )
    return row


# --------------------------------------------------------------------------------------------------
# end to end


def write_set(path: Path, n: int, seed: int) -> float:
    """The generated set as JSONL, written as it is generated; returns the seconds it took."""
    from briefxai_sampledata import iter_conversations
    from briefxai_sampledata.generator import write_jsonl

    began = time.perf_counter()
    with path.open("w", encoding="utf-8") as out:
        write_jsonl(iter_conversations(n, seed), out)
    return time.perf_counter() - began


def read_set(path: Path) -> Iterator[ConversationRecord]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            item = json.loads(line)
            yield ConversationRecord(
                id=str(item["id"]),
                user_id=str(item.get("user_id", "")),
                messages=tuple(Message(m["role"], m["content"]) for m in item["messages"]),
                metadata={str(k): str(v) for k, v in (item.get("metadata") or {}).items()},
                line=number,
            )


def upload_requests(
    path: Path, options: gateway_pb2.AnalysisOptions, request_id: str
) -> Iterator[gateway_pb2.UploadAnalysisRequest]:
    """The UploadAnalysis stream read from ``path`` as it is sent (batches of 1,000)."""
    yield gateway_pb2.UploadAnalysisRequest(
        header=gateway_pb2.UploadHeader(options=options, request_id=request_id)
    )
    batch = []
    for record in read_set(path):
        batch.append(to_proto(record))
        if len(batch) >= UPLOAD_BATCH:
            yield gateway_pb2.UploadAnalysisRequest(batch=gateway_pb2.ConversationBatch(conversations=batch))
            batch = []
    if batch:
        yield gateway_pb2.UploadAnalysisRequest(batch=gateway_pb2.ConversationBatch(conversations=batch))


def read_results(client: GatewayClient, analysis_id: str) -> dict[str, Any]:
    """Every page of the results, counted (not kept): conversations, withheld, map points, sizes."""
    token = ""
    counted = {"conversations": 0, "withheld": 0, "in_a_cluster": 0, "map_points": 0, "pages": 0}
    first: gateway_pb2.GetAnalysisResultsResponse | None = None
    while True:
        page = client.stub.GetAnalysisResults(
            gateway_pb2.GetAnalysisResultsRequest(id=analysis_id, page_size=1000, page_token=token),
            timeout=client.timeout,
        )
        if first is None:
            first = page
        counted["pages"] += 1
        for row in page.conversations:
            counted["conversations"] += 1
            counted["withheld"] += row.withheld
            counted["in_a_cluster"] += bool(row.cluster_id)
            counted["map_points"] += row.HasField("point")
        token = page.next_page_token
        if not token:
            break
    assert first is not None
    base = [c.cluster for c in first.clusters if c.cluster.level == 0]
    return {
        **counted,
        "clusters": len(first.clusters),
        "base_clusters": len(base),
        "base_sizes_sum": sum(c.size for c in base),
        "smallest_base_cluster": min((c.size for c in base), default=0),
        "fewest_distinct_users": min((c.cluster.distinct_users for c in first.clusters), default=0),
        "k": first.k,
        "k_rule": first.k_rule,
        "total_conversations": first.total_conversations,
        "withheld_conversations": first.withheld_conversations,
    }


def end_to_end(
    n: int, seed: int, embed_text: str, token_budget: int | None, env: dict[str, str]
) -> dict[str, Any]:
    """One analysis of ``n`` generated conversations through a suite of four service processes."""
    report: dict[str, Any] = {"conversations": n, "data_seed": seed, "environment": env}
    env = {"BRIEFXAI_GATEWAY_MAX_CONVERSATIONS_PER_ANALYSIS": str(max(n, 200_000)), **env}
    with tempfile.TemporaryDirectory(prefix="briefxai-million-") as folder:
        path = Path(folder) / "conversations.jsonl"
        report["write_set_seconds"] = round(write_set(path, n, seed), 1)
        report["set_file_mib"] = round(path.stat().st_size / MIB, 1)
        print(f"  million: set written ({report['set_file_mib']} MiB)", file=sys.stderr, flush=True)
        began = time.perf_counter()
        with running_services(SERVICES, extra_env=env) as suite:
            report["suite_ready_seconds"] = round(time.perf_counter() - began, 1)
            report["embedding_model"] = embedding_model(suite)
            http_port = suite.plan.service("gateway").http_port
            embedding_port = suite.plan.service("embedding").http_port
            stages_before = scrape_stage_metrics(http_port)
            embedding_before = scrape_embedding_metrics(embedding_port)["embedding"]
            pids = {name: child.process.pid for name, child in suite.children.items()}
            options = build_options(
                seed=1,
                display_name=f"million-{n}",
                embed_text=EMBED_TEXT_FLAG[embed_text],
                embed_tokens=token_budget,
            )
            with GatewayClient(suite.gateway_address, timeout=600.0, api_key=suite.admin_key) as client:
                with ProcessSampler(pids) as running:
                    began = time.perf_counter()
                    timeline = Timeline(began)
                    analysis = client.stub.UploadAnalysis(
                        upload_requests(path, options, f"million-{n}-{seed}"), timeout=3600.0
                    ).analysis
                    uploaded = time.perf_counter() - began
                    print(f"  million: uploaded in {uploaded:.0f} s", file=sys.stderr, flush=True)
                    final = client.wait(analysis.id, on_update=timeline)
                    seconds = time.perf_counter() - began
                if final.state != gateway_pb2.ANALYSIS_STATE_SUCCEEDED:
                    raise RuntimeError(f"the analysis ended {state_name(final.state)}: {final.error}")
                print(f"  million: SUCCEEDED after {seconds:.0f} s", file=sys.stderr, flush=True)
                with ProcessSampler(pids) as reading:
                    read_began = time.perf_counter()
                    results = read_results(client, analysis.id)
                    read_seconds = time.perf_counter() - read_began
                    delete_began = time.perf_counter()
                    client.delete(analysis.id)
                    delete_seconds = time.perf_counter() - delete_began
            stages_after = scrape_stage_metrics(http_port)
            embedding_after = scrape_embedding_metrics(embedding_port)["embedding"]
    gateway_stages = {
        kind: {
            stage: round(value - stages_before[kind].get(stage, 0.0), 2) for stage, value in values.items()
        }
        for kind, values in stages_after.items()
    }
    embedding = {key: round(value - embedding_before.get(key, 0.0)) for key, value in embedding_after.items()}
    computed = (
        embedding.get("texts_requested", 0)
        - embedding.get("cache_hits", 0)
        - embedding.get("deduplicated", 0)
    )
    analysis_processes = running.summary()
    embed_cpu = analysis_processes["cpu_seconds"].get("embedding", 0.0)
    report.update(
        {
            "embed_text": embed_text,
            "embed_token_budget": token_budget,
            "upload_seconds": round(uploaded, 1),
            "seconds": round(seconds, 1),
            "conversations_per_second": round(n / seconds, 1),
            "warnings": list(final.warnings),
            **timeline.summary(),
            "gateway_stage_metrics": gateway_stages,
            "embedding_metrics": embedding,
            "embed_stage": {
                "texts_requested": embedding.get("texts_requested", 0),
                "texts_computed": computed,
                "texts_from_cache_or_dedupe": embedding.get("texts_requested", 0) - computed,
                "tokens_computed": embedding.get("tokens_computed", 0),
                "embedding_cpu_seconds": embed_cpu,
                "texts_computed_per_cpu_second": round(computed / embed_cpu, 1) if embed_cpu else 0.0,
                "conversations_per_embedding_cpu_second": round(n / embed_cpu, 1) if embed_cpu else 0.0,
            },
            "processes": analysis_processes,
            "results_read_seconds": round(read_seconds, 1),
            "processes_reading_results_and_deleting": reading.summary(),
            "results": results,
            "delete_seconds": round(delete_seconds, 1),
        }
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=1_000_000, help="conversations (and vectors)")
    parser.add_argument("--sections", default="texts,clustering,e2e", help="any of texts, clustering, e2e")
    parser.add_argument("--seed", type=int, default=DATA_SEED, help="data seed")
    parser.add_argument("--embed-text", default="first_user_message", choices=sorted(EMBED_TEXT_FLAG))
    parser.add_argument(
        "--embed-tokens", type=int, default=None, help="embed token budget (default: gateway's)"
    )
    parser.add_argument(
        "--max-vectors",
        type=int,
        default=None,
        help="the clustering service's max_vectors, the fit sample (default: its own, 200,000)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment setting of the services, e.g. BRIEFXAI_EMBEDDING_CACHE_MAX_MB=320 (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/million-<n>.json")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    env = dict(item.split("=", 1) for item in args.env)
    if args.max_vectors:
        env["BRIEFXAI_CLUSTERING_MAX_VECTORS"] = str(args.max_vectors)
    out = args.out or REPO / "benchmarks" / "results" / f"million-{args.n}.json"
    report: dict[str, Any] = {
        "date": now_iso(),
        "machine": machine_info(),
        "load_average_start": load_average(),
    }
    if out.exists():
        report = {**json.loads(out.read_text()), **report}
    began = time.perf_counter()
    for section in sections:
        print(f"  million: {section} at n={args.n:,} ...", file=sys.stderr, flush=True)
        if section == "texts":
            report["texts"] = distinct_texts(args.n, args.seed, TEXT_SETTINGS)
        elif section == "clustering":
            report["clustering"] = cluster_alone(args.n, seed=1, env=env)
        elif section == "e2e":
            report["e2e"] = end_to_end(args.n, args.seed, args.embed_text, args.embed_tokens, env)
        else:
            parser.error(f"unknown section {section!r}")
        report["load_average_end"] = load_average()
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps(report[section], indent=1), file=sys.stderr, flush=True)
    report["seconds"] = round(time.perf_counter() - began, 1)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"  million: written {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
