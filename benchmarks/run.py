"""All BriefXAI benchmarks in one command.

    python -m benchmarks.run --smoke       # every section at tiny sizes (CI): benchmarks/results/smoke.json
    python -m benchmarks.run --full        # benchmarks/results/latest.json and docs/benchmarks.md
    python -m benchmarks.run --full --sizes 1000,10000   # a shorter full run (sizes recorded)

Sections: 1 embedding (per backend and batch size, in-process and over gRPC), 2 facets (heuristic, and
LLM-bound against the fake OpenAI server), 3 clustering (1k/10k/100k x 384), 4-6 end to end through the
gateway with every service as a process (streamed vs inline, a re-run on a warm cache, a cheaper embedded
text, several analyses at once, peak RSS per service, scaling), 4b (`e2e-real`) end to end on real human
chats (the dev set of ``benchmarks.dev_data`` repeated to ~10k on a suite with the embedding cache off;
reported as not measured, not failed, where the dev set cannot be built), 7 (`text`) what the embedded
text costs: tokens, speed and cluster quality per embed-text mode and budget, 8 (`assign`) new
conversations into an existing analysis (AssignConversations: the assignment and store step, without
facets and embedding). Targets are printed next to the figures with, for each one missed, a likely
cause from stage timings, CPU seconds per service and (when installed) py-spy. Nothing here asserts a timing: the exit status is 0 unless a section fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REPO,
    conversation_protos,
    conversation_records,
    find_py_spy,
    load_average,
    machine_info,
    now_iso,
)
from benchmarks.report import evaluate_targets, render_markdown

RESULTS_DIR = REPO / "benchmarks" / "results"
DOCS = REPO / "docs" / "benchmarks.md"
SECTIONS = ("embedding", "facets", "clustering", "e2e", "e2e-real", "text", "assign", "replicas")
FULL_SIZES = (1_000, 10_000, 100_000)
BACKENDS = ("onnx-int8-static", "onnx-int8", "onnx-fp32", "torch-fp32")


@dataclass(frozen=True)
class Plan:
    mode: str
    sections: tuple[str, ...] = SECTIONS
    embed_backends: tuple[str, ...] = BACKENDS
    embed_batch_sizes: tuple[int, ...] = (16, 64)
    embed_texts: int = 500
    embed_repeats: int = 2
    embed_threads: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    conversation_texts: int = 512
    facets_heuristic: int = 5000
    llm_concurrency: tuple[int, ...] = (16, 64)
    llm_latency: float = 0.2
    llm_seconds: float = 10.0
    clustering_sizes: tuple[int, ...] = FULL_SIZES
    e2e_sizes: tuple[int, ...] = FULL_SIZES
    e2e_inline_max: int = 10_000
    e2e_concurrent: tuple[int, int] = (3, 1000)
    e2e_budget_minutes: float = 45.0
    e2e_real_chats: int = 10_000  # real dev-set chats end to end (repeated past the 2,873 there are)
    text_conversations: int = 2000
    text_seeds: int = 5
    assign_base: int = 10_000  # the analysis new conversations are assigned to
    assign_conversations: int = 5_000
    assign_call_size: int = 1_000
    replicas_conversations: int = 5_000  # end to end with 1 and 2 embedding replicas (docs/scaling.md)
    py_spy: str | None = None
    notes: tuple[str, ...] = ()


SMOKE = Plan(
    mode="smoke",
    embed_batch_sizes=(16,),
    embed_texts=32,
    embed_repeats=1,
    conversation_texts=32,
    facets_heuristic=200,
    llm_seconds=2.0,
    clustering_sizes=(1_000,),
    e2e_sizes=(200,),
    e2e_inline_max=200,
    e2e_concurrent=(3, 50),
    e2e_budget_minutes=60.0,
    e2e_real_chats=300,
    text_conversations=200,
    text_seeds=1,
    assign_base=200,
    assign_conversations=200,
    assign_call_size=100,
    replicas_conversations=200,
)
FULL = Plan(mode="full")


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()}))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"sizes must be integers separated by commas: {text!r}") from exc
    if not sizes or min(sizes) < 10:
        raise argparse.ArgumentTypeError("sizes must be at least 10")
    return sizes


def _count(text: str) -> int:
    sizes = _sizes(text)
    if len(sizes) != 1:
        raise argparse.ArgumentTypeError(f"one number expected: {text!r}")
    return sizes[0]


def _names(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(part.strip() for part in text.split(",") if part.strip())
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}; got {text!r}")
        return names

    return parse


def parse_args(argv: Sequence[str] | None) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, every section (CI)")
    mode.add_argument("--full", action="store_true", help="full sizes; writes docs/benchmarks.md")
    parser.add_argument("--sizes", type=_sizes, help="e2e and clustering sizes, e.g. 1000,10000")
    parser.add_argument("--e2e-sizes", type=_sizes, help="end-to-end sizes (overrides --sizes)")
    parser.add_argument("--clustering-sizes", type=_sizes, help="clustering sizes (overrides --sizes)")
    parser.add_argument("--sections", type=_names(SECTIONS), help=f"subset of {','.join(SECTIONS)}")
    parser.add_argument("--backends", type=_names(BACKENDS), help="embedding backends to measure")
    parser.add_argument("--batch-sizes", type=_sizes, help="embedding batch sizes, e.g. 32,64,128")
    parser.add_argument(
        "--e2e-budget-minutes",
        type=float,
        help="skip an e2e size whose run is estimated (from the previous size) to exceed this",
    )
    parser.add_argument(
        "--real-chats",
        type=_count,
        metavar="N",
        help="conversations in the real-chat end-to-end run (the dev set repeated to N)",
    )
    parser.add_argument("--py-spy", help="py-spy binary (default: $PY_SPY or py-spy on PATH, if any)")
    parser.add_argument(
        "--note", action="append", default=[], help="a line for the report (e.g. why a size was not run)"
    )
    parser.add_argument("--out", type=Path, help="results JSON (default by mode)")
    parser.add_argument(
        "--render-from",
        type=Path,
        metavar="JSON",
        help="measure nothing: re-evaluate the targets of a --full results file and rewrite the docs",
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help="Markdown report (--full only)")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    changes: dict[str, Any] = {"notes": tuple(args.note), "py_spy": find_py_spy(args.py_spy)}
    if args.sizes:
        changes["e2e_sizes"] = changes["clustering_sizes"] = args.sizes
    if args.e2e_sizes:
        changes["e2e_sizes"] = args.e2e_sizes
    if args.clustering_sizes:
        changes["clustering_sizes"] = args.clustering_sizes
    if args.sections:
        changes["sections"] = args.sections
    if args.backends:
        changes["embed_backends"] = args.backends
    if args.batch_sizes:
        changes["embed_batch_sizes"] = args.batch_sizes
    if args.real_chats:
        changes["e2e_real_chats"] = args.real_chats
    if args.e2e_budget_minutes is not None:
        changes["e2e_budget_minutes"] = args.e2e_budget_minutes
    if args.smoke:
        changes["py_spy"] = None  # keep CI lean and independent of what is installed
    plan = replace(plan, **changes)
    if plan.e2e_sizes and plan.e2e_concurrent[0] and plan.e2e_concurrent[1] > max(plan.e2e_sizes):
        plan = replace(plan, e2e_concurrent=(plan.e2e_concurrent[0], min(plan.e2e_sizes)))
    return plan, args


class LoadWatcher:
    """The highest 1-minute load average seen while the benchmarks run (sampled every 5 s)."""

    def __init__(self) -> None:
        self.highest = os.getloadavg()[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-watch", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(5.0):
            self.highest = max(self.highest, os.getloadavg()[0])

    def __enter__(self) -> LoadWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def not_run(plan: Plan, results: dict[str, Any]) -> list[str]:
    """What the full benchmark covers that this run did not, and why (as far as the run knows)."""
    lines = list(plan.notes)
    for section in SECTIONS:
        if section not in plan.sections:
            lines.append(f"section `{section}`: not selected (`--sections`)")
    if plan.mode == "full":
        if "e2e" in plan.sections:
            for n in FULL_SIZES:
                if n not in plan.e2e_sizes:
                    lines.append(f"end to end at {n:,}: not requested (`--e2e-sizes`/`--sizes`)")
            for skipped in results.get("e2e", {}).get("skipped", []):
                lines.append(f"end to end at {skipped['conversations']:,}: skipped, {skipped['reason']}")
            for n in results.get("e2e", {}).get("sizes_run", []):
                if n > plan.e2e_inline_max:
                    lines.append(
                        f"inline CreateAnalysis at {n:,}: not run (streamed only above {plan.e2e_inline_max:,}; "
                        "the CLI streams above 5,000 conversations too)"
                    )
        if "clustering" in plan.sections:
            for n in FULL_SIZES:
                if n not in plan.clustering_sizes:
                    lines.append(f"clustering at {n:,}: not requested (`--clustering-sizes`/`--sizes`)")
    real = results.get("e2e-real") or {}
    if "unavailable" in real:
        lines.append(f"end to end on real chats: the dev set could not be built ({real['unavailable']})")
    if plan.py_spy is None and "e2e" in plan.sections:
        lines.append("py-spy profile: py-spy not installed (pass `--py-spy PATH` or set `PY_SPY`)")
    for section, error in results.get("errors", {}).items():
        lines.append(f"section `{section}` failed: {error.splitlines()[-1] if error else ''}")
    return lines


def run_sections(plan: Plan, results: dict[str, Any]) -> None:
    records_needed = max(plan.conversation_texts, plan.facets_heuristic, 1)
    print(f"generating {records_needed:,} sample conversations ...", file=sys.stderr, flush=True)
    records = conversation_records(records_needed, seed=3)
    results["errors"] = {}

    def section(name: str, fn: Callable[[], Any]) -> None:
        if name not in plan.sections:
            return
        print(f"== {name} (load average {load_average()})", file=sys.stderr, flush=True)
        began = time.perf_counter()
        try:
            results[name] = fn()
        except Exception:
            results["errors"][name] = traceback.format_exc()
            print(results["errors"][name], file=sys.stderr)
        results.setdefault("section_seconds", {})[name] = round(time.perf_counter() - began, 1)

    def embedding() -> Any:
        from benchmarks import embedding_grpc

        return embedding_grpc.run(
            plan.embed_backends,
            plan.embed_batch_sizes,
            plan.embed_texts,
            plan.embed_repeats,
            plan.embed_threads,
            records[: plan.conversation_texts],
        )

    def facets() -> Any:
        from benchmarks import facets_bench

        return facets_bench.run(
            conversation_protos(records),
            plan.facets_heuristic,
            plan.llm_concurrency,
            plan.llm_latency,
            plan.llm_seconds,
            plan.py_spy,
        )

    def clustering() -> Any:
        from benchmarks import clustering_bench

        return clustering_bench.run(plan.clustering_sizes)

    def e2e() -> Any:
        from benchmarks import e2e as e2e_bench

        return e2e_bench.run(
            plan.e2e_sizes,
            inline_max=plan.e2e_inline_max,
            concurrent=plan.e2e_concurrent,
            budget_minutes=plan.e2e_budget_minutes,
            py_spy=plan.py_spy,
        )

    def e2e_real() -> Any:
        from benchmarks import e2e as e2e_bench

        return e2e_bench.real_chats(plan.e2e_real_chats, py_spy=plan.py_spy)

    def text() -> Any:
        from benchmarks import embed_text_bench

        return embed_text_bench.run(plan.text_conversations, plan.text_seeds, smoke=plan.mode == "smoke")

    def assign() -> Any:
        from benchmarks import assign_bench

        return assign_bench.run(plan.assign_base, plan.assign_conversations, plan.assign_call_size)

    section("embedding", embedding)
    section("facets", facets)
    section("clustering", clustering)
    section("e2e", e2e)
    section("e2e-real", e2e_real)
    section("text", text)

    def replicas() -> Any:
        from benchmarks import replicas_bench

        return replicas_bench.run(plan.replicas_conversations)

    section("assign", assign)
    section("replicas", replicas)
    if not results["errors"]:
        del results["errors"]


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    temporary.replace(path)


def render_from(path: Path, docs: Path) -> int:
    """Recomputes the targets of a saved --full run and rewrites its JSON and the Markdown report."""
    results = json.loads(path.read_text(encoding="utf-8"))
    if results.get("mode") != "full" or "errors" in results:
        print(f"{path} is not a complete --full run; docs left as they are", file=sys.stderr)
        return 1
    results["targets"] = evaluate_targets(results)
    write_json(path, results)
    docs.write_text(render_markdown(results), encoding="utf-8")
    print(f"wrote {docs} from {path}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    plan, args = parse_args(argv)
    if args.render_from is not None:
        return render_from(args.render_from, args.docs)
    os.chdir(REPO)  # worker processes run `python -m benchmarks...` from the repository root
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    command = "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv)
    results: dict[str, Any] = {
        "mode": plan.mode,
        "command": command.strip(),
        "started_at": now_iso(),
        "machine": machine_info(),
        "plan": asdict(plan),
        "load_average": {"start": load_average()},
    }
    print(f"{command.strip()}: {results['machine']}", file=sys.stderr, flush=True)
    began = time.perf_counter()
    with LoadWatcher() as watcher:
        run_sections(plan, results)
    results["load_average"]["end"] = load_average()
    results["load_average"]["max_1min"] = round(watcher.highest, 2)
    results["finished_at"] = now_iso()
    results["duration_seconds"] = round(time.perf_counter() - began, 1)
    if "e2e" in results:
        results["e2e_embedding_backend"] = results["e2e"].get("embedding_model", "")
    results["gateway_max_concurrent_analyses"] = _gateway_max_concurrent()
    results["targets"] = evaluate_targets(results)
    results["not_run"] = not_run(plan, results)
    out = args.out or RESULTS_DIR / ("latest.json" if plan.mode == "full" else "smoke.json")
    write_json(out, results)
    print(f"wrote {out}", file=sys.stderr)
    if plan.mode == "full" and "errors" not in results:
        args.docs.parent.mkdir(parents=True, exist_ok=True)
        args.docs.write_text(render_markdown(results), encoding="utf-8")
        print(f"wrote {args.docs}", file=sys.stderr)
    for row in results["targets"]:
        print(
            f"  {row['status']:>12}  {row['target']}: {row['measured']} (goal {row['goal']})", file=sys.stderr
        )
    if "errors" in results:
        print(f"failed sections: {', '.join(results['errors'])}", file=sys.stderr)
        return 1
    return 0


def _gateway_max_concurrent() -> int:
    from briefxai_gateway.settings import GatewaySettings

    return GatewaySettings.load().max_concurrent_analyses


if __name__ == "__main__":
    sys.exit(main())
