"""End-to-end conversations/s through the gateway with one and with several local embedding replicas.

    python -m benchmarks.replicas_bench --n 5000                  # configs 1, 2 and 2:4
    python -m benchmarks.replicas_bench --n 5000 --configs 1,2:4:1 --json out.json

For each configuration a fresh suite (the CLI's supervisor, embedded defaults, free ports, SQLite in a
temporary folder) runs the embedding service as ``R`` replicas; the gateway gets their ``ipv4:`` list and
round-robins over them. After a warm-up analysis of 100 conversations, ``n`` sample conversations are
streamed and followed to SUCCEEDED with :func:`benchmarks.e2e.measured_run` (the same timing, RSS and
CPU sampling as sections 4-6). Every configuration analyses the same conversations on a cold cache.

A configuration is ``R[:C[:T]]``: ``R`` embedding replicas, ``C`` EmbedTexts calls the gateway keeps in
flight (``gateway.embedding_max_concurrent_calls``; 0 or left out: its default, 2), ``T`` inference
threads per replica (``embedding.torch_threads``; 0 or left out: all CPUs, so replicas on one machine
share its cores).
Nothing is asserted: the figures are printed as a markdown table (and written as JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import conversation_records, load_average, machine_info, now_iso
from benchmarks.e2e import SEED, _scrape, measured_run, one_analysis, scrape_embedding_metrics
from briefxai_cli.client import GatewayClient
from briefxai_cli.supervisor import Suite, plan_suite

EMBED_METHOD = ("briefxai.embedding.v1.EmbeddingService", "EmbedTexts")
WARM_UP = 100


@dataclass(frozen=True)
class Config:
    replicas: int
    embedding_calls: int | None = None  # gateway.embedding_max_concurrent_calls; None: the gateway's default
    torch_threads: int | None = None  # embedding.torch_threads per replica; None: its default (all CPUs)

    @classmethod
    def parse(cls, text: str) -> Config:
        """``R[:C[:T]]``; 0 for ``C`` or ``T`` keeps that default."""
        try:
            parts = [int(part) for part in text.strip().split(":")]
        except ValueError:
            parts = []
        if not 1 <= len(parts) <= 3 or parts[0] < 1 or min(parts) < 0:
            raise ValueError(f"{text!r}: expected R[:C[:T]], R >= 1, C and T >= 0 (0: the default)")
        calls, threads = [*parts[1:], 0, 0][:2]
        return cls(parts[0], calls or None, threads or None)

    @property
    def label(self) -> str:
        parts = [self.replicas, self.embedding_calls or 0, self.torch_threads or 0]
        while len(parts) > 1 and parts[-1] == 0:
            parts.pop()
        return ":".join(str(part) for part in parts)

    def env(self) -> dict[str, str]:
        env = {}
        if self.embedding_calls is not None:
            env["BRIEFXAI_GATEWAY_EMBEDDING_MAX_CONCURRENT_CALLS"] = str(self.embedding_calls)
        if self.torch_threads is not None:
            env["BRIEFXAI_EMBEDDING_TORCH_THREADS"] = str(self.torch_threads)
        return env


DEFAULT_CONFIGS = (Config(1), Config(2), Config(2, embedding_calls=4))


@contextmanager
def replicated_suite(replicas: int, extra_env: Mapping[str, str]) -> Iterator[Suite]:
    """The four services with ``replicas`` embedding replicas, on free ports; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="briefxai-bench-replicas-") as data_dir:
        plan = plan_suite(data_dir, base_port=0, replicas={"embedding": replicas})
        suite = Suite(plan, extra_env=dict(extra_env))
        suite.start(timeout=600.0, check_ports=False)
        try:
            yield suite
        finally:
            bad = {name: code for name, code in suite.stop().items() if code != 0}
            if bad:
                print(f"warning: services exited with {bad}", file=sys.stderr)


def embed_calls(suite: Suite) -> dict[str, float]:
    """EmbedTexts calls each embedding replica has answered OK so far (its own server metrics)."""
    calls = {}
    for plan in suite.plan.replicas("embedding"):
        calls[plan.instance] = sum(
            sample.value
            for family in _scrape(plan.http_port)
            for sample in family.samples
            if sample.name == "grpc_server_handled_total"
            and (sample.labels.get("grpc_service"), sample.labels.get("grpc_method")) == EMBED_METHOD
            and sample.labels.get("grpc_code") == "OK"
        )
    return calls


def model_counters(suite: Suite) -> dict[str, float]:
    """The embedding counters of :func:`benchmarks.e2e.scrape_embedding_metrics`, summed over replicas."""
    total: dict[str, float] = {}
    for plan in suite.plan.replicas("embedding"):
        for key, value in scrape_embedding_metrics(plan.http_port)["embedding"].items():
            total[key] = total.get(key, 0.0) + value
    return total


def measure(config: Config, n: int, seed: int = SEED) -> dict[str, Any]:
    """One fresh suite for ``config``, a warm-up analysis, then ``n`` conversations measured."""
    records = conversation_records(n, seed + n)
    print(f"  replicas {config.label}: starting the suite ...", file=sys.stderr, flush=True)
    with (
        replicated_suite(config.replicas, config.env()) as suite,
        GatewayClient(suite.gateway_address, timeout=600.0, api_key=suite.admin_key) as client,
    ):
        one_analysis(client, conversation_records(WARM_UP, seed + 100), stream=True, label="bench-warm-up")
        calls_before, counters_before = embed_calls(suite), model_counters(suite)
        row = measured_run(suite, client, records, stream=True, variant=f"embedding replicas {config.label}")
        calls_after, counters_after = embed_calls(suite), model_counters(suite)
    processes = row["processes"]
    embedding = sorted(name for name in processes["peak_rss_mib"] if name.startswith("embedding"))
    return {
        "config": config.label,
        "embedding_replicas": config.replicas,
        "embedding_calls_in_flight": config.embedding_calls,
        "torch_threads": config.torch_threads,
        "conversations": n,
        "seconds": row["seconds"],
        "conversations_per_second": row["conversations_per_second"],
        "embed_calls_per_replica": {k: round(v - calls_before.get(k, 0.0)) for k, v in calls_after.items()},
        "embedding_counters": {k: round(v - counters_before.get(k, 0.0)) for k, v in counters_after.items()},
        "peak_rss_total_mib": processes["peak_rss_total_mib"],
        "peak_rss_embedding_mib": {name: processes["peak_rss_mib"][name] for name in embedding},
        "cpu_seconds": processes["cpu_seconds"],
        "stage_finished_at": row["stage_finished_at"],
    }


def run(n: int, configs: Sequence[Config] = DEFAULT_CONFIGS, seed: int = SEED) -> dict[str, Any]:
    """Every configuration in turn (one suite at a time); the report :func:`markdown` renders."""
    report: dict[str, Any] = {"measured_at": now_iso(), "machine": machine_info(), "conversations": n}
    report["load_average_before"] = load_average()  # other work on the machine shares its CPUs
    report["rows"] = [measure(config, n, seed) for config in configs]
    report["load_average_after"] = load_average()
    return report


def markdown(report: Mapping[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"{report['conversations']:,} sample conversations streamed through the gateway, embedded defaults; "
        f"{machine['usable_cpus']} CPUs ({machine['cpu_model']}), git {machine['git']}, {report['measured_at']}; "
        f"load average {report['load_average_before']} before, {report['load_average_after']} after.",
        "",
        "| embedding replicas | EmbedTexts in flight | threads per replica | seconds | conversations/s "
        "| EmbedTexts calls per replica | peak RSS, all services (MiB) | peak RSS per embedding replica (MiB) "
        "| CPU s, embedding (all replicas) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        cpu = sum(v for k, v in row["cpu_seconds"].items() if k.startswith("embedding"))
        lines.append(
            f"| {row['embedding_replicas']} | {row['embedding_calls_in_flight'] or '2 (default)'} "
            f"| {row['torch_threads'] or 'all CPUs (default)'} | {row['seconds']} "
            f"| {row['conversations_per_second']} "
            f"| {' / '.join(str(v) for v in row['embed_calls_per_replica'].values())} "
            f"| {row['peak_rss_total_mib']} "
            f"| {' / '.join(str(v) for v in row['peak_rss_embedding_mib'].values())} | {cpu:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replicas_bench", description=__doc__)
    parser.add_argument("--n", type=int, default=5000, help="conversations per measured analysis")
    parser.add_argument(
        "--configs",
        default=",".join(c.label for c in DEFAULT_CONFIGS),
        help="comma-separated R[:C[:T]]: embedding replicas, EmbedTexts calls in flight, threads per replica",
    )
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    try:
        configs = [Config.parse(item) for item in args.configs.split(",") if item.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    report = run(args.n, configs)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
