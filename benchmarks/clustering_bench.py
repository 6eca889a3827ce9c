"""Section 3: the clustering pipeline at n x 384 (base clusters, privacy, hierarchy, naming, 2-D map).

The logic of ``benchmarks/clustering_stages.py`` (same synthetic data: 60 planted topics, overlapping
blobs, seed 7; same pipeline), but configured exactly as the clustering service is (its settings and
server defaults for the request parameters), and one fresh process per size so that the process's peak
RSS belongs to that size alone. UMAP's numba code is compiled (warmed up) before the timed run, as the
service does at start.

``python -m benchmarks.clustering_bench N`` prints one JSON line; :func:`run` drives it per size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, load_average


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
    return float("nan")


def measure(n: int) -> dict[str, Any]:
    import numpy as np
    from sklearn.metrics import adjusted_rand_score

    from briefxai_clustering.model import ClusteringInput
    from briefxai_clustering.pipeline import STAGES, ClusteringPipeline, PipelineConfig
    from briefxai_clustering.projection import warm_up
    from briefxai_clustering.settings import ClusteringSettings
    from briefxai_clustering.validation import RequestedParams, resolve_params
    from tests.clustering.synthetic import make_data

    settings = ClusteringSettings.load()
    pipeline = ClusteringPipeline(PipelineConfig.from_settings(settings))
    began = time.perf_counter()
    warm_up(pipeline.config.map)
    warm_up_seconds = time.perf_counter() - began
    data = make_data(n, centers=60, dim=384, seed=7, cluster_std=6.0)
    request = ClusteringInput(data.vectors, data.ids, data.user_ids, data.texts)
    params = resolve_params(RequestedParams(seed=1), settings)
    cpu, wall = time.process_time(), time.perf_counter()
    result = pipeline.run(request, params)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    labels = np.asarray([a.cluster_id for a in result.assignments])
    return {
        "n": n,
        "dim": int(data.vectors.shape[1]),
        "threads": pipeline.config.threads,
        "numba_warm_up_seconds": round(warm_up_seconds, 1),
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "stage_seconds": {s: round(result.timings.get(s, 0.0), 2) for s in STAGES},
        "stage_cpu_seconds": {s: round(result.cpu_timings.get(s, 0.0), 2) for s in STAGES},
        "k": result.k,
        "k_rule": result.k_rule,
        "top_level_clusters": sum(1 for c in result.clusters if not c.parent_id),
        "base_algorithm": result.base_algorithm,
        "map_algorithm": result.map_algorithm,
        "ari_vs_planted": round(float(adjusted_rand_score(data.labels, labels)), 3),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
    }


def run(sizes: Sequence[int]) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        print(f"  clustering {n} x 384 ...", file=sys.stderr, flush=True)
        load = load_average()
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks.clustering_bench", str(n)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"clustering benchmark at n={n} failed:\n{completed.stderr[-4000:]}")
        row: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
        row["load_average_before"] = load
        rows.append(row)
        print(f"  clustering {n}: {row['seconds']} s {row['stage_seconds']}", file=sys.stderr, flush=True)
    return rows


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]))))
