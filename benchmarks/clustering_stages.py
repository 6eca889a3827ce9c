"""Clustering pipeline stage timings at 1k / 10k / 100k x 384 (a measurement, not a test).

Run: ``.venv/bin/python -m benchmarks.clustering_stages [threads=N] [n ...]`` (threads: BLAS/OpenMP
threads per job, default 1; the pipeline's own default is every CPU the process may use). Generates clustered unit vectors
(60 planted topics, overlapping blobs) with short texts, warms UMAP's numba code up once, then runs the
whole pipeline per size and prints, per stage, wall seconds and CPU seconds (of the pipeline's thread; the
"total" CPU column is the whole process), then k, the top-level count, the algorithms and the adjusted
Rand index against the planted topics. CPU seconds are the steadier figure on a shared machine.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from sklearn.metrics import adjusted_rand_score

from briefxai_clustering.model import ClusteringInput, ClusteringParams
from briefxai_clustering.pipeline import STAGES, ClusteringPipeline, PipelineConfig
from briefxai_clustering.projection import warm_up
from tests.clustering.synthetic import make_data

DEFAULT_SIZES = (1_000, 10_000, 100_000)


def main(sizes: list[int], threads: int) -> None:
    pipeline = ClusteringPipeline(PipelineConfig(threads=threads))
    print(f"threads per job: {threads}")
    started = time.perf_counter()
    warm_up(pipeline.config.map)
    print(f"numba warm-up (UMAP JIT): {time.perf_counter() - started:.1f} s", flush=True)
    header = ["n", "seconds", *STAGES, "total", "k", "top", "base", "map", "ARI"]
    print(" | ".join(f"{h:>8}" for h in header), flush=True)
    for n in sizes:
        data = make_data(n, centers=60, dim=384, seed=7, cluster_std=6.0)
        request = ClusteringInput(data.vectors, data.ids, data.user_ids, data.texts)
        cpu = time.process_time()
        wall = time.perf_counter()
        result = pipeline.run(request, ClusteringParams(seed=1))
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
        labels = [a.cluster_id for a in result.assignments]
        top = sum(1 for c in result.clusters if not c.parent_id)
        tail = [
            str(result.k),
            str(top),
            result.base_algorithm,
            result.map_algorithm,
            f"{adjusted_rand_score(data.labels, np.asarray(labels)):.3f}",
        ]
        for kind, per_stage, total in (("wall", result.timings, wall), ("cpu", result.cpu_timings, cpu)):
            row = [str(n), kind, *(f"{per_stage.get(s, 0.0):.2f}" for s in STAGES), f"{total:.2f}", *tail]
            print(" | ".join(f"{v:>8}" for v in row), flush=True)


if __name__ == "__main__":
    options = [a for a in sys.argv[1:] if a.startswith("threads=")]
    numbers = [int(a) for a in sys.argv[1:] if not a.startswith("threads=")]
    main(numbers or list(DEFAULT_SIZES), int(options[-1].split("=")[1]) if options else 1)
