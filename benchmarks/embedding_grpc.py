"""Section 1: embedding throughput per backend and batch size, in-process and over gRPC, in one run.

In-process figures come from :mod:`benchmarks.embedding_backends` (a fresh process per backend and batch
size, the backend's own ``embed`` over all texts). Right after each, the same backend with the same batch
size and threads runs behind the embedding service (a real process); the client sends the same texts:

- ``single call``: one ``EmbedTexts`` with every text (what differs from in-process is gRPC alone:
  serialisation, the hop, validation) -> the gRPC overhead %;
- ``gateway pattern``: calls of the gateway's batch (256 texts) with 2 in flight, as the gateway sends
  them (each call is length-sorted on its own, so a little more padding than one big call).

Then one-text calls, 32 at once, with the service's micro-batching on and off. Then, for the default
backend only, the texts the gateway really embeds (sample conversations cut to the
gateway's character budget) in-process and over gRPC: the figure end-to-end throughput is compared with.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import embedding_backends
from benchmarks.common import channel as open_channel
from benchmarks.common import chunks, running_services, service_pids, tree_rss, windowed
from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai_cli.inputs import ConversationRecord
from briefxai_embedding.settings import EmbeddingSettings

# Benchmark names (as in benchmarks.embedding_backends) -> the embedding service's settings.
SERVICE_ENV: dict[str, dict[str, str]] = {
    "onnx-int8-static": {
        "BRIEFXAI_EMBEDDING_BACKEND": "onnx",
        "BRIEFXAI_EMBEDDING_ONNX_PRECISION": "int8-static",
    },
    "onnx-int8": {"BRIEFXAI_EMBEDDING_BACKEND": "onnx", "BRIEFXAI_EMBEDDING_ONNX_PRECISION": "int8"},
    "onnx-fp32": {"BRIEFXAI_EMBEDDING_BACKEND": "onnx", "BRIEFXAI_EMBEDDING_ONNX_PRECISION": "fp32"},
    "torch-fp32": {"BRIEFXAI_EMBEDDING_BACKEND": "torch"},
}
DEFAULT_BACKEND = "onnx-int8-static"  # the embedding service's default: backend onnx, int8-static
DEFAULT_BATCH_SIZE = EmbeddingSettings.model_fields["batch_size"].default  # the service's default
GATEWAY_BATCH = 256  # the gateway's default batch_size (texts per EmbedTexts call)
GATEWAY_IN_FLIGHT = 2  # the gateway's default embedding_max_concurrent_calls
MAX_TEXTS_PER_CALL = 2048  # the embedding service's default max_texts_per_request
MB = 1024 * 1024
SINGLE_TEXT_CONCURRENCY = 32


def in_process(name: str, batch_size: int, texts: int, repeats: int, threads: int) -> dict[str, Any]:
    """One ``benchmarks.embedding_backends`` run (fresh worker process) for one backend and batch size."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "report.json"
        argv = [
            "--backends", name, "--batch-sizes", str(batch_size), "--texts", str(texts),
            "--repeats", str(repeats), "--threads", str(threads), "--out", str(out),
        ]  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()):
            embedding_backends.main(argv)
        report = json.loads(out.read_text())
    run: dict[str, Any] = report["runs"][0]
    return run


def _rates(texts: int, seconds: Sequence[float]) -> dict[str, float]:
    return {
        "texts_per_second_best": round(texts / min(seconds), 1),
        "texts_per_second_median": round(texts / statistics.median(seconds), 1),
    }


def over_grpc(name: str, batch_size: int, texts: Sequence[str], repeats: int, threads: int) -> dict[str, Any]:
    """The same backend behind the embedding service: single-call and gateway-pattern throughput."""
    env = {
        **SERVICE_ENV[name],
        "BRIEFXAI_EMBEDDING_BATCH_SIZE": str(batch_size),
        "BRIEFXAI_EMBEDDING_TORCH_THREADS": str(threads),
        # The model's own path: repeated passes over the same texts must not be served by the cache.
        "BRIEFXAI_EMBEDDING_CACHE_MAX_MB": "0",
    }
    started = time.perf_counter()
    with running_services(["embedding"], env) as suite:
        ready_seconds = time.perf_counter() - started
        pid = service_pids(suite)["embedding"]
        rss_after_load = tree_rss(pid)
        with open_channel(suite.plan.service("embedding").address, suite.service_token) as ch:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(ch)

            def call(part: Sequence[str]) -> embedding_pb2.EmbedTextsResponse:
                response: embedding_pb2.EmbedTextsResponse = stub.EmbedTexts(
                    embedding_pb2.EmbedTextsRequest(texts=list(part)), timeout=600
                )
                if response.vectors.count != len(part):
                    raise RuntimeError(f"{response.vectors.count} vectors for {len(part)} texts")
                return response

            call(texts[:batch_size])  # warm-up
            single: list[float] = []
            pattern: list[float] = []
            request_bytes = response_bytes = 0
            for _ in range(repeats):
                began = time.perf_counter()
                for part in chunks(texts, MAX_TEXTS_PER_CALL):
                    response = call(part)
                    response_bytes += response.ByteSize()
                    request_bytes += embedding_pb2.EmbedTextsRequest(texts=list(part)).ByteSize()
                single.append(time.perf_counter() - began)
                began = time.perf_counter()
                windowed(
                    [lambda p=p: call(p) for p in chunks(texts, GATEWAY_BATCH)],  # type: ignore[misc]
                    GATEWAY_IN_FLIGHT,
                )
                pattern.append(time.perf_counter() - began)
            peak = tree_rss(pid)
    return {
        "backend": name,
        "batch_size": batch_size,
        "threads": threads,
        "texts": len(texts),
        "ready_seconds": round(ready_seconds, 1),
        "service_rss_after_load_mib": round(rss_after_load / MB, 1),
        "service_rss_end_mib": round(peak / MB, 1),
        "single_call": _rates(len(texts), single),
        "gateway_pattern": {
            **_rates(len(texts), pattern),
            "texts_per_call": GATEWAY_BATCH,
            "in_flight": GATEWAY_IN_FLIGHT,
        },
        "bytes_per_text": {
            "request": round(request_bytes / repeats / len(texts), 1),
            "response": round(response_bytes / repeats / len(texts), 1),
        },
    }


def single_text_calls(texts: Sequence[str], concurrency: int, *, merging: bool) -> dict[str, Any]:
    """One-text ``EmbedTexts`` calls, ``concurrency`` at once (an online client's pattern), against the
    default backend with the service's dynamic micro-batching on (its defaults) or off (a batch per call).
    The cache is off in both, so each text costs a model pass."""
    import grpc

    from briefxai_common.service_auth import token_interceptors

    env = {"BRIEFXAI_EMBEDDING_CACHE_MAX_MB": "0"}
    if not merging:
        env |= {"BRIEFXAI_EMBEDDING_MAX_BATCH_TEXTS": "1", "BRIEFXAI_EMBEDDING_BATCH_WAIT_MS": "0"}

    async def drive(address: str, token: str) -> tuple[float, list[float]]:
        async with grpc.aio.insecure_channel(address, interceptors=token_interceptors(token)) as ch:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(ch)
            latencies: list[float] = []
            pending = iter(texts)

            async def worker() -> None:
                for text in pending:
                    began = time.perf_counter()
                    response = await stub.EmbedTexts(
                        embedding_pb2.EmbedTextsRequest(texts=[text]), timeout=600
                    )
                    if response.vectors.count != 1:
                        raise RuntimeError(f"{response.vectors.count} vectors for 1 text")
                    latencies.append(time.perf_counter() - began)

            await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=list(texts[:16])), timeout=600)
            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - began, latencies

    with running_services(["embedding"], env) as suite:
        seconds, latencies = asyncio.run(drive(suite.plan.service("embedding").address, suite.service_token))
    latencies.sort()
    return {
        "merging": merging,
        "texts": len(texts),
        "concurrency": concurrency,
        "texts_per_second": round(len(texts) / seconds, 1),
        "latency_ms_p50": round(1000 * latencies[len(latencies) // 2], 1),
        "latency_ms_p99": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
    }


def overhead_percent(in_process_rate: float, grpc_rate: float) -> float:
    """How much slower the gRPC path is, as a % of the in-process rate (negative: faster)."""
    if in_process_rate <= 0:
        return float("nan")
    return round(100.0 * (1.0 - grpc_rate / in_process_rate), 1)


def conversation_texts(records: Sequence[ConversationRecord]) -> list[str]:
    """What the gateway embeds for each conversation by default (its embed_text and token budget, cut
    as the embedding service cuts it)."""
    from briefxai_embedding.onnx_export import bundled_model_path
    from briefxai_embedding.token_cut import TokenCutter
    from briefxai_gateway.embed_text import char_budget, embed_text
    from briefxai_gateway.models import Conversation, EmbedTextMode, Message
    from briefxai_gateway.settings import GatewaySettings

    settings = GatewaySettings.load()  # the gateway's defaults (and any BRIEFXAI_GATEWAY_* override)
    tokens, mode = settings.defaults.embed_token_budget, EmbedTextMode(settings.defaults.embed_text)
    budget = char_budget(tokens)
    texts = []
    for record in records:
        conversation = Conversation(
            id=record.id,
            user_id=record.user_id,
            messages=[Message(m.role, m.content) for m in record.messages],
            metadata=dict(record.metadata),
        )
        texts.append(embed_text(conversation, mode, budget).text)
    return TokenCutter.from_file(bundled_model_path() / "tokenizer.json").cut(texts, tokens)[0]


def conversation_in_process(texts: list[str], repeats: int, threads: int) -> dict[str, Any]:
    """The default backend at the service's default batch size, in this process, on ``texts``."""
    report = asyncio.run(
        embedding_backends._worker(DEFAULT_BACKEND, DEFAULT_BATCH_SIZE, threads, texts, repeats)
    )
    report.pop("vectors", None)
    report.pop("peak_rss_mib", None)  # this process's high-water mark, not the model's
    report.pop("rss_after_load_mib", None)
    return report


def run(
    backends: Sequence[str],
    batch_sizes: Sequence[int],
    texts: int,
    repeats: int,
    threads: int,
    records: Sequence[ConversationRecord],
) -> dict[str, Any]:
    word_texts = embedding_backends.make_texts(texts)
    rows: list[dict[str, Any]] = []
    for batch_size in batch_sizes:
        for name in backends:
            print(f"  embedding {name} batch {batch_size}: in-process ...", file=sys.stderr, flush=True)
            local = in_process(name, batch_size, texts, repeats, threads)
            print(f"  embedding {name} batch {batch_size}: over gRPC ...", file=sys.stderr, flush=True)
            remote = over_grpc(name, batch_size, word_texts, repeats, threads)
            rows.append(
                {
                    "backend": name,
                    "batch_size": batch_size,
                    "in_process": local,
                    "grpc": remote,
                    "grpc_overhead_percent": overhead_percent(
                        local["texts_per_second_best"], remote["single_call"]["texts_per_second_best"]
                    ),
                    "gateway_pattern_overhead_percent": overhead_percent(
                        local["texts_per_second_best"], remote["gateway_pattern"]["texts_per_second_best"]
                    ),
                }
            )
    print(f"  embedding: one-text calls, {SINGLE_TEXT_CONCURRENCY} at once ...", file=sys.stderr, flush=True)
    single_text = [
        single_text_calls(word_texts, SINGLE_TEXT_CONCURRENCY, merging=merging) for merging in (True, False)
    ]
    print(f"  embedding {DEFAULT_BACKEND} on {len(records)} conversation texts ...", file=sys.stderr)
    conv_texts = conversation_texts(records)
    local = conversation_in_process(conv_texts, repeats, threads)
    remote = over_grpc(DEFAULT_BACKEND, DEFAULT_BATCH_SIZE, conv_texts, repeats, threads)
    return {
        "texts": texts,
        "words_per_text": "25-35",
        "repeats": repeats,
        "threads": threads,
        "runs": rows,
        "single_text_calls": single_text,
        "conversation_texts": {
            "backend": DEFAULT_BACKEND,
            "batch_size": DEFAULT_BATCH_SIZE,
            "texts": len(conv_texts),
            "mean_chars": round(sum(map(len, conv_texts)) / max(len(conv_texts), 1), 1),
            "in_process": local,
            "grpc": remote,
            "grpc_overhead_percent": overhead_percent(
                local["texts_per_second_best"], remote["single_call"]["texts_per_second_best"]
            ),
        },
    }
