"""The performance history: samples of gateway processes and timings of successful analysis runs,
read back per window and deleted past the retention period (see ``sampler.py``, ``performance.py``).

A sample's histograms are stored as JSON ``{method: {"type", "le", "counts", "count", "sum"}}`` where
``le`` holds the finite bucket bounds and ``counts`` one more cumulative count, the ``+Inf`` bucket's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import RowMapping, delete, func, insert, select

from .. import schema
from ..models import Stage
from ..performance import AnalysisRun, RpcHistogram, Sample, StageTiming
from .base import StoreBase
from .codecs import dumps


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def encode_histograms(rpcs: Mapping[str, RpcHistogram]) -> str:
    return dumps(
        {
            method: {
                "type": h.grpc_type,
                "le": [b for b in h.bounds if not math.isinf(b)],
                "counts": list(h.counts),
                "count": h.count,
                "sum": h.sum,
            }
            for method, h in rpcs.items()
        }
    )


def decode_histograms(text: str) -> dict[str, RpcHistogram]:
    result = {}
    for method, item in json.loads(text or "{}").items():
        bounds = tuple(float(b) for b in item["le"])
        counts = tuple(float(c) for c in item["counts"])
        if len(counts) == len(bounds) + 1:
            bounds = (*bounds, math.inf)
        result[method] = RpcHistogram(
            str(item.get("type", "")), bounds, counts, float(item["count"]), float(item["sum"])
        )
    return result


def _stages_to_json(stages: Mapping[Stage, StageTiming]) -> str:
    return dumps(
        {s.value: {"conversations": t.conversations, "seconds": t.seconds} for s, t in stages.items()}
    )


def _stages_from_json(text: str) -> dict[Stage, StageTiming]:
    known = {s.value for s in Stage}
    return {
        Stage(name): StageTiming(int(item["conversations"]), float(item["seconds"]))
        for name, item in json.loads(text).items()
        if name in known
    }


class PerformanceRepository(StoreBase):
    """Samples and analysis runs of this tenant's gateways."""

    def save_performance_sample(self, sample: Sample) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(schema.performance_samples).values(
                    tenant_id=self.tenant_id,
                    instance=sample.instance,
                    sample_time=sample.time,
                    rss_bytes=sample.rss_bytes,
                    rpc_histograms=encode_histograms(sample.rpcs),
                )
            )

    def record_analysis_run(self, instance: str, run: AnalysisRun) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(schema.performance_runs).values(
                    tenant_id=self.tenant_id,
                    instance=instance,
                    finish_time=run.finish_time,
                    conversations=run.conversations,
                    run_seconds=run.run_seconds,
                    embed_tokens=run.embed_tokens,
                    stages=_stages_to_json(run.stages),
                )
            )

    def prune_performance(self, before: datetime) -> int:
        """Deletes samples and runs older than ``before``; returns how many rows went."""
        s = schema.performance_samples.c
        r = schema.performance_runs.c
        with self.engine.begin() as conn:
            gone = conn.execute(
                delete(schema.performance_samples).where(
                    s.tenant_id == self.tenant_id, s.sample_time < before
                )
            ).rowcount
            gone += conn.execute(
                delete(schema.performance_runs).where(r.tenant_id == self.tenant_id, r.finish_time < before)
            ).rowcount
        return int(gone)

    def performance_history(self, start: datetime, end: datetime) -> tuple[list[Sample], list[AnalysisRun]]:
        """Samples taken in ``[start, end]`` plus each process's last sample before ``start`` (the
        baseline of its RPC counts), oldest first; and the runs that finished in ``[start, end]``."""
        s = schema.performance_samples.c
        r = schema.performance_runs.c
        baselines = (
            select(func.max(s.seq))
            .where(s.tenant_id == self.tenant_id, s.sample_time < start)
            .group_by(s.instance)
        )
        samples_query = (
            select(schema.performance_samples)
            .where(
                s.tenant_id == self.tenant_id,
                ((s.sample_time >= start) & (s.sample_time <= end)) | s.seq.in_(baselines),
            )
            .order_by(s.sample_time, s.seq)
        )
        runs_query = (
            select(schema.performance_runs)
            .where(r.tenant_id == self.tenant_id, r.finish_time >= start, r.finish_time <= end)
            .order_by(r.finish_time, r.seq)
        )
        with self.engine.connect() as conn:
            samples = [_sample(row) for row in conn.execute(samples_query).mappings()]
            runs = [
                AnalysisRun(
                    finish_time=_utc(row["finish_time"]),
                    conversations=int(row["conversations"]),
                    run_seconds=float(row["run_seconds"]),
                    embed_tokens=int(row["embed_tokens"]),
                    stages=_stages_from_json(row["stages"]),
                )
                for row in conn.execute(runs_query).mappings()
            ]
        return samples, runs


def _sample(row: RowMapping) -> Sample:
    return Sample(
        time=_utc(row["sample_time"]),
        instance=row["instance"],
        rss_bytes=int(row["rss_bytes"]),
        rpcs=decode_histograms(row["rpc_histograms"]),
    )
