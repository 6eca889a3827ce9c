"""Throughput and memory of the local embedding backends: torch fp32, ONNX fp32, ONNX int8 (dynamic
quantization) and ONNX int8-static (calibrated activation scales, the service's default).

``python -m benchmarks.embedding_backends [--texts 1000] [--batch-sizes 32 64 128] [--out FILE]``

Each (backend, batch size) runs in a fresh process: RSS is read after the model loads, one warm-up
batch runs, then ``--repeats`` timed passes embed all texts through the backend's own ``embed`` (the
tokenizing, length-sorting and batching the service does; the ONNX backends with the service's
default ``batch_tokens`` and ``onnx_parallel_runs``). Texts are ~30 words (25-35) drawn from a fixed word
list with a fixed seed. Vectors of the last pass are kept to compare backends: the mean cosine of each
ONNX variant against torch fp32, and of each int8 variant against ONNX fp32. Prints a JSON report (and
writes it with ``--out``); it asserts nothing. The ONNX exports are built first when missing (their time
is reported).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from briefxai_embedding.backends.base import EmbeddingBackend

BACKENDS = ("torch-fp32", "onnx-fp32", "onnx-int8", "onnx-int8-static")
WORD_LIST = (
    "account access after again agent answer app ask assistant bank bill book booking bug build call "
    "cancel card change chart check city clear client code company computer confirm contract cost "
    "customer data date day delay delivery design device discount doctor document email error event "
    "exercise family fast feature file flight food free friend game garden goal health help holiday home "
    "hotel house idea invoice issue job key language learn letter library link list login machine "
    "manager market meeting message model money month morning music network night number offer office "
    "online order package page password payment phone photo plan policy price problem product project "
    "question quick recipe refund report request reset restaurant review room route rule school screen "
    "search security server service setting share ship shop simple slow software song sound start "
    "station store story student study subscription support system table task team test ticket time "
    "today train travel trip update upgrade user video visit wait water weather website week window "
    "work write year how what why when where can could would should please thanks need want help my "
    "your our the a an and or but with without for from into about over under this that these those"
)
WORDS = tuple(WORD_LIST.split())


def make_texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(25, 35))) for _ in range(count)]


def _rss_mib() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _peak_rss_mib() -> float:
    """This process's high-water RSS (VmHWM: unlike ru_maxrss, not inherited from the forking parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
    return float("nan")


def _make_backend(name: str, batch_size: int, threads: int) -> EmbeddingBackend:
    if name == "torch-fp32":
        from briefxai_embedding.backends.sentence_transformers import SentenceTransformersBackend

        return SentenceTransformersBackend(batch_size=batch_size, torch_threads=threads)
    from briefxai_embedding.backends.onnx import OnnxBackend
    from briefxai_embedding.onnx_export import PRECISIONS
    from briefxai_embedding.settings import EmbeddingSettings

    precision = next(p for p in PRECISIONS if name == f"onnx-{p}")
    defaults = EmbeddingSettings.model_fields
    return OnnxBackend(
        precision=precision,
        batch_size=batch_size,
        batch_tokens=defaults["batch_tokens"].default,
        intra_op_threads=threads,
        parallel_runs=defaults["onnx_parallel_runs"].default,
    )


async def _worker(name: str, batch_size: int, threads: int, texts: list[str], repeats: int) -> dict[str, Any]:
    backend = _make_backend(name, batch_size, threads)
    started = time.perf_counter()
    await backend.load()
    load_seconds = time.perf_counter() - started
    rss_after_load = _rss_mib()
    await backend.embed(texts[:batch_size])  # warm-up
    rates = []
    vectors = np.zeros((0, 0), dtype=np.float32)
    for _ in range(repeats):
        started = time.perf_counter()
        result = await backend.embed(texts)
        rates.append(len(texts) / (time.perf_counter() - started))
        vectors = result.vectors
        tokens = sum(result.token_counts)
    await backend.close()
    return {
        "backend": name,
        "batch_size": batch_size,
        "threads": threads,
        "load_seconds": round(load_seconds, 2),
        "rss_after_load_mib": round(rss_after_load, 1),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        "texts_per_second_best": round(max(rates), 1),
        "texts_per_second_median": round(statistics.median(rates), 1),
        "tokens_per_text": round(tokens / len(texts), 1),
        "torch_imported": "torch" in sys.modules,
        "vectors": vectors,
    }


def _run_worker(args: argparse.Namespace) -> None:
    texts = make_texts(args.texts)
    report = asyncio.run(_worker(args.worker, args.batch_size, args.threads, texts, args.repeats))
    np.save(args.vectors_out, report.pop("vectors"))
    print(json.dumps(report))


def _export_seconds() -> dict[str, float]:
    """Builds the default ONNX exports if missing; returns how long each build took (0 when cached)."""
    from briefxai_embedding.onnx_export import PRECISIONS, export_model

    return {precision: round(export_model(precision=precision).seconds, 1) for precision in PRECISIONS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.embedding_backends", description=__doc__)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--vectors-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _run_worker(args)
        return 0

    exports = _export_seconds()
    runs: list[dict[str, Any]] = []
    vectors: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for batch_size in args.batch_sizes:
            for name in args.backends:
                path = Path(scratch) / f"{name}-{batch_size}.npy"
                command = [
                    sys.executable, "-m", "benchmarks.embedding_backends", "--worker", name,
                    "--batch-size", str(batch_size), "--texts", str(args.texts),
                    "--repeats", str(args.repeats), "--threads", str(args.threads),
                    "--vectors-out", str(path),
                ]  # fmt: skip
                load_before = os.getloadavg()[0]
                completed = subprocess.run(command, capture_output=True, text=True, check=True)
                run = json.loads(completed.stdout.strip().splitlines()[-1])
                run["load_average_before"] = round(load_before, 2)
                runs.append(run)
                vectors[f"{name}-{batch_size}"] = np.load(path)
                print(json.dumps(run), file=sys.stderr)
    reference = next((v for k, v in vectors.items() if k.startswith("torch-fp32")), None)
    cosines: dict[str, float] = {}
    for key, value in vectors.items():
        if reference is not None and not key.startswith("torch-fp32"):
            cosines[f"{key} vs torch-fp32"] = round(float(np.mean(np.sum(value * reference, axis=1))), 4)
    for batch_size in args.batch_sizes:
        fp32 = vectors.get(f"onnx-fp32-{batch_size}")
        for name in ("onnx-int8", "onnx-int8-static"):
            int8 = vectors.get(f"{name}-{batch_size}")
            if int8 is not None and fp32 is not None:
                cosines[f"{name}-{batch_size} vs onnx-fp32"] = round(
                    float(np.mean(np.sum(int8 * fp32, axis=1))), 4
                )
    report = {
        "texts": args.texts,
        "words_per_text": "25-35",
        "cpus": len(os.sched_getaffinity(0)),
        "export_seconds": exports,
        "runs": runs,
        "mean_cosine": cosines,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
