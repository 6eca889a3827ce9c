"""Targets and the Markdown report, computed from the results dict alone (pure functions, no I/O)."""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any

from benchmarks.targets import E2E_TARGET_RATE, REAL_CHATS_KEY, TARGETS, Target

DEFAULT_BACKEND_LABEL = "onnx-int8-static at the service's default batch size"
MET, NOT_MET, NOT_MEASURED = "met", "not met", "not measured"

Row = dict[str, Any]


# --------------------------------------------------------------------------------------------------
# Lookups


def streamed_runs(results: Row) -> list[Row]:
    runs = results.get("e2e", {}).get("runs", [])
    return sorted(
        (r for r in runs if "stream" in r["upload"] and not r.get("variant")),
        key=lambda r: r["conversations"],
    )


def variant_runs(results: Row) -> list[Row]:
    """Runs that are not cold runs on the defaults (warm cache, a cheaper embedded text)."""
    return [r for r in results.get("e2e", {}).get("runs", []) if r.get("variant")]


def streamed_at(results: Row, n: int) -> Row | None:
    return next((r for r in streamed_runs(results) if r["conversations"] == n), None)


def largest_streamed(results: Row) -> Row | None:
    runs = streamed_runs(results)
    return runs[-1] if runs else None


def real_chats_run(results: Row) -> Row | None:
    """The measured real-chat run, or None (not run, or the dev set could not be built)."""
    real = results.get(REAL_CHATS_KEY)
    return real if real and "unavailable" not in real else None


def clustering_at(results: Row, n: int) -> Row | None:
    return next((r for r in results.get("clustering", []) if r["n"] == n), None)


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _size(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


# --------------------------------------------------------------------------------------------------
# Likely causes (one line each, from stage timings, CPU seconds and py-spy)


def _cpu_shares(run: Row) -> str:
    cpu: dict[str, float] = run.get("processes", {}).get("cpu_seconds", {})
    total = sum(cpu.values())
    if not total:
        return ""
    wall = float(run.get("seconds") or 0.0)
    parts = ", ".join(
        f"{name} {100 * value / total:.0f}%" for name, value in sorted(cpu.items(), key=lambda kv: -kv[1])
    )
    busy = f" ({total / wall:.2f} cores busy on average)" if wall else ""
    return f"CPU-seconds by service: {parts}{busy}"


def _phases(run: Row) -> str:
    finished: dict[str, float] = run.get("stage_finished_at", {})
    seconds = float(run.get("seconds") or 0.0)
    created = float(run.get("create_seconds") or 0.0)
    batch_end = max(finished.get("FACETS", 0.0), finished.get("EMBED", 0.0))
    cluster_end = finished.get("CLUSTER")
    if not seconds or not batch_end:
        return ""
    parts = [f"upload {created:.0f} s", f"facets+embed until {batch_end:.0f} s"]
    if cluster_end is not None:
        parts.append(f"clustering {cluster_end - batch_end:.0f} s")
        parts.append(f"store/finish {seconds - cluster_end:.0f} s")
    return f"of {seconds:.0f} s: " + ", ".join(parts)


def _top_frame(run: Row) -> str:
    profile: dict[str, Row] = run.get("py_spy") or {}
    cpu: dict[str, float] = run.get("processes", {}).get("cpu_seconds", {})
    if not profile or not cpu:
        return ""
    busiest = max(cpu, key=lambda name: cpu[name])
    frames = profile.get(busiest, {}).get("top_leaf_frames") or []
    if not frames:
        return ""
    shown = "; ".join(f"`{name}` {share}%" for name, share in frames[:2])
    return f"py-spy, {busiest}: {shown}"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _embedding_ceiling(results: Row) -> str:
    conv = results.get("embedding", {}).get("conversation_texts")
    if not conv:
        return ""
    rate = float(conv["in_process"]["texts_per_second_best"])
    if rate >= E2E_TARGET_RATE:
        return ""
    tokens = conv["in_process"].get("tokens_per_text")
    line = (
        f"ceiling: {conv['backend']} alone embeds these conversation texts at {rate:,.1f}/s in-process "
        f"on this machine, below {E2E_TARGET_RATE:g}"
    )
    if tokens:
        per_second = rate * float(tokens)
        line += (
            f" ({float(tokens):.0f} tokens each, {per_second:,.0f} tokens/s; {E2E_TARGET_RATE:g} conv/s "
            f"needs {E2E_TARGET_RATE * float(tokens):,.0f} tokens/s, or at most "
            f"~{per_second / E2E_TARGET_RATE:.0f} tokens per conversation at this rate)"
        )
    cheap = [r for r in variant_runs(results) if "first_user_message" in r["variant"]]
    for run in cheap:
        metrics = run.get("embedding_metrics") or {}
        served = ""
        if metrics:
            reused = metrics.get("cache_hits", 0.0) + metrics.get("deduplicated", 0.0)
            served = f" (the cache or dedupe served {reused / max(metrics['texts_requested'], 1):.0%} of its texts)"
        line += (
            f"; end to end with `embed_text first_user_message` ({_size(run['conversations'])}): "
            f"{run['conversations_per_second']:,.1f} conv/s{served}"
        )
    fast = [r for r in results.get("text", {}).get("rows", []) if r["texts_per_second"] >= E2E_TARGET_RATE]
    default = next(iter(results.get("text", {}).get("rows", [])), None)
    if default is not None:
        if fast:
            line += "; section 7: in-process only " + ", ".join(
                f"`{r['mode']}` ({r['mean_tokens']:.0f} tokens, AMI {r['ami_auto_k']:.3f})" for r in fast
            )
            line += f" reach it, against AMI {default['ami_auto_k']:.3f} on the default text"
        else:
            line += "; section 7: no embedded text tried reaches it in-process"
    return line


def _e2e_cause(run: Row | None) -> str:
    if run is None:
        return ""
    return _join(_phases(run), _cpu_shares(run), _top_frame(run))


def _real_chats_cause(run: Row) -> str:
    """Tokens the model computed per real conversation against the tokens/s the target needs."""
    tokens = float(run.get("tokens_per_conversation") or 0.0)
    per_second = float(run.get("tokens_per_second") or 0.0)
    line = ""
    if tokens and per_second:
        line = (
            f"the model computed {tokens:,.0f} tokens per real conversation at {per_second:,.0f} tokens/s "
            f"end to end; {E2E_TARGET_RATE:g} conv/s needs {E2E_TARGET_RATE * tokens:,.0f} tokens/s at that "
            f"length, or at most ~{per_second / E2E_TARGET_RATE:.0f} tokens per conversation at this rate"
        )
    return _join(line, _e2e_cause(run))


def _embedding_memory(results: Row) -> str:
    conv = results.get("embedding", {}).get("conversation_texts")
    if not conv:
        return ""
    grpc = conv["grpc"]
    return (
        f"the embedding service alone goes from {grpc['service_rss_after_load_mib']:,.0f} MiB after load to "
        f"{grpc['service_rss_end_mib']:,.0f} MiB after embedding conversation texts at batch "
        f"{conv['batch_size']} (~{_num(conv['in_process'].get('tokens_per_text'), 0)} tokens each): "
        "during a call ONNX Runtime's arena holds the largest batch's activations (it is shrunk after each "
        "call), and the vector cache grows up to its cache_max_mb"
    )


def _cause_end_to_end(results: Row, run: Row) -> str:
    return _join(_embedding_ceiling(results), _e2e_cause(run))


def _cause_real_chats(results: Row, run: Row) -> str:
    return _real_chats_cause(run)


def _cause_versus_embedding(results: Row, run: Row) -> str:
    conv = results["embedding"]["conversation_texts"]
    reference = float(conv["in_process"]["texts_per_second_best"])
    embed_alone = run["conversations"] / reference if reference else float("nan")
    pattern = conv["grpc"]["gateway_pattern"]["texts_per_second_best"]
    return _join(
        f"embedding alone needs {embed_alone:.0f} s of the {run['seconds']:.0f} s run",
        f"over gRPC in the gateway's pattern (256 texts a call, 2 in flight, each call length-sorted "
        f"on its own) the same texts embed at {pattern:,.1f}/s ({100 * pattern / reference:.0f}%)",
        _phases(run),
        _cpu_shares(run),
    )


def _cause_llm_bound(results: Row, llm: Row) -> str:
    cpu = llm.get("facets_service_cpu_seconds")
    cores = f"{cpu / llm['seconds']:.2f} cores" if cpu is not None and llm["seconds"] else "?"
    rate = float(llm["conversations_per_second"])
    slot = llm["concurrency"] / rate if rate else float("nan")
    cause = (
        f"each of the {llm['concurrency']} slots took {1000 * slot:.0f} ms per conversation "
        f"({1000 * (slot - llm['latency_seconds']):.0f} ms over the latency); "
        f"at most {llm['max_requests_in_flight']} of {llm['concurrency']} requests were in flight; "
        f"the facets service used {_num(cpu)} CPU-s in {llm['seconds']:.1f} s ({cores}), "
        f"the fake server and client {_num(llm.get('bench_process_cpu_seconds'))} CPU-s"
    )
    if cpu is not None and llm["seconds"] and cpu / llm["seconds"] > 0.8:
        cause += " - one event loop near a full core: CPU per request caps the rate"
    frames = (llm.get("py_spy") or {}).get("facets", {}).get("top_leaf_frames") or []
    if frames:
        cause += "; py-spy, facets: " + "; ".join(f"`{name}` {share}%" for name, share in frames[:3])
    return cause


def _cause_rss(results: Row, run: Row) -> str:
    # Each service when the sum peaked (older results only have each service's own peak).
    per = run["processes"].get("rss_at_total_peak_mib") or run["processes"]["peak_rss_mib"]
    split = ", ".join(f"{service} {mib:,.0f}" for service, mib in sorted(per.items(), key=lambda kv: -kv[1]))
    return _join(f"per service (MiB): {split}", _embedding_memory(results))


def _cause_rss_real_chats(results: Row, run: Row) -> str:
    cause = _cause_rss(results, run)
    return cause + " (in this run the vector cache was off: what it holds is not part of the figure)"


def _cause_clustering(results: Row, run: Row) -> str:
    stages = sorted(run["stage_seconds"].items(), key=lambda kv: -kv[1])
    return "slowest stages: " + ", ".join(f"{s} {v:.1f} s" for s, v in stages[:3])


def _cause_end_to_end_scaling(results: Row, big: Row) -> str:
    small = streamed_at(results, 10_000)
    assert small is not None
    return _join(f"10k: {_phases(small)}", f"100k: {_phases(big)}")


def _cause_assign(results: Row, run: Row) -> str:
    store = run.get("store_seconds") or {}
    step = float(run.get("assign_step_seconds") or 0.0)
    written = float(store.get("store_save_revision", 0.0))
    read = float(store.get("store_load_revision_state", 0.0))
    return (
        f"of the step's {step:.2f} s over {len(run.get('calls', []))} calls: the revisions' transactions "
        f"{written:.2f} s, reading a revision's state (first call, or after another writer) {read:.2f} s; the "
        f"rest is the nearest centroids (k = {run.get('k')}) and the revisions' counts and distributions"
    )


def _cause_clustering_scaling(results: Row, big: Row) -> str:
    small = clustering_at(results, 10_000)
    assert small is not None
    ratios = {s: big["stage_seconds"][s] / v for s, v in small["stage_seconds"].items() if v >= 0.05}
    worst = sorted(ratios.items(), key=lambda kv: -kv[1])[:3]
    return "stage ratios 100k/10k: " + ", ".join(f"{s} {r:.0f}x" for s, r in worst)


# The likely cause of a missed target (targets.Target.cause): (results, the run measured) -> one line.
CAUSES: dict[str, Callable[[Row, Row], str]] = {
    "end_to_end": _cause_end_to_end,
    "real_chats": _cause_real_chats,
    "versus_embedding": _cause_versus_embedding,
    "llm_bound": _cause_llm_bound,
    "rss": _cause_rss,
    "rss_real_chats": _cause_rss_real_chats,
    "clustering": _cause_clustering,
    "end_to_end_scaling": _cause_end_to_end_scaling,
    "clustering_scaling": _cause_clustering_scaling,
    "assign": _cause_assign,
}


# --------------------------------------------------------------------------------------------------
# Targets (the table: benchmarks/targets.py)


def target(name: str, goal: str, measured: str, status: str, cause: str = "") -> Row:
    return {"target": name, "goal": goal, "measured": measured, "status": status, "cause": cause}


def _status(ok: bool) -> str:
    return MET if ok else NOT_MET


def _walk(node: Any, keys: str) -> Any:
    for key in keys.split(".") if keys else ():
        node = node.get(key) if isinstance(node, dict) else None
    return node


def resolve(results: Row, path: str) -> tuple[Any, Any]:
    """``(value, run)`` at a metric path (see benchmarks.targets): ``run`` is what the path starts at."""
    head, _, keys = path.partition(".")
    kind, _, n = head.partition(":")
    if not n:
        run = results.get(head)
    elif kind == "e2e":
        run = largest_streamed(results) if n == "largest" else streamed_at(results, int(n))
    elif kind == "clustering":
        run = clustering_at(results, int(n))
    else:
        raise ValueError(f"unknown run {head!r} in the metric path {path!r}")
    return _walk(run, keys), run


def _readings(results: Row, path: str) -> list[tuple[Any, Any]]:
    """``(value, run)`` pairs: one, or one per item of a ``[*]`` list."""
    items, star, keys = path.partition("[*].")
    if not star:
        return [resolve(results, path)]
    return [(_walk(item, keys), item) for item in resolve(results, items)[0] or ()]


class _Wording(string.Formatter):
    """``str.format`` in which a missing or None field reads "–"."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        try:
            return super().get_field(field_name, args, kwargs)
        except (KeyError, IndexError, TypeError):
            return None, field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        return "–" if value is None else super().format_field(value, format_spec)


_WORDING = _Wording()


class _At:
    """``at[path]`` in a target's wording: the value at any metric path."""

    def __init__(self, results: Row) -> None:
        self.results = results

    def __getitem__(self, path: str) -> Any:
        return resolve(self.results, path)[0]


def evaluate_targets(results: Row) -> list[Row]:
    """One row per target of :data:`benchmarks.targets.TARGETS` (per item of a ``[*]`` metric), in order."""
    rows: list[Row] = []
    for spec in TARGETS:
        for value, run in _readings(results, spec.metric):
            row = _evaluate(spec, results, value, run)
            if row is not None:
                rows.append(row)
    return rows


def _evaluate(spec: Target, results: Row, value: Any, run: Any) -> Row | None:
    fields = {"compare": spec.compare, "threshold": spec.threshold, "unit": spec.unit, "at": _At(results)}

    def say(template: str, source: Any, value: Any = None) -> str:
        """``template`` filled in for the run ``source`` (None when there is none)."""
        known = isinstance(source, dict)
        size = _size(source["conversations"]) if known and "conversations" in source else None
        reason = source.get("unavailable") if known else None
        return _WORDING.format(template, **fields, value=value, row=source, size=size, reason=reason)

    def met(value: Any) -> bool:
        return float(value) >= spec.threshold if spec.compare == ">=" else float(value) <= spec.threshold

    if value is not None and spec.per is not None:
        value = _ratio(value, resolve(results, spec.per)[0], spec.scale)
    if value is not None:
        ok = met(value)
        cause = "" if ok else CAUSES[spec.cause](results, run)
        return target(
            say(spec.name, run), say(spec.goal, run), say(spec.measured, run, value), _status(ok), cause
        )

    if spec.not_run is None:
        return None
    name = say(spec.not_run_name or spec.name, None)
    goal = say(spec.not_run_goal or spec.goal, None)
    if isinstance(run, dict) and "unavailable" in run:
        return target(name, goal, say(spec.unavailable, run), NOT_MEASURED)
    if spec.fallback is not None:
        fallback, fallback_run = resolve(results, spec.fallback)
        if fallback is not None:
            cause = ""
            if not met(fallback):
                cause = say(spec.fallback_cause, fallback_run) + CAUSES[spec.cause](results, fallback_run)
            measured = say(spec.fallback_measured, fallback_run, fallback)
            return target(name, goal, measured, NOT_MEASURED, cause)
    return target(name, goal, say(spec.not_run, None), NOT_MEASURED)


def _ratio(value: Any, per: Any, scale: float) -> float | None:
    """``scale * value / per``; None when ``per`` is missing, NaN when it is 0."""
    if per is None:
        return None
    return scale * float(value) / float(per) if per else float("nan")


# --------------------------------------------------------------------------------------------------
# Markdown


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)
    return lines


def render_markdown(results: Row) -> str:
    machine = results.get("machine", {})
    load = results.get("load_average", {})
    out: list[str] = [
        "# Benchmarks",
        "",
        f"Written by `{results.get('command', 'python -m benchmarks.run --full')}`; do not edit by hand "
        "(the raw figures are in `benchmarks/results/latest.json`). Figures are from one run on a shared "
        "machine: read them with the load average in mind.",
        "",
        "## Run",
        "",
    ]
    out += _table(
        ["", ""],
        [
            ["date (UTC)", results.get("started_at", "–")],
            ["duration", f"{_num(results.get('duration_seconds', 0) / 60)} min"],
            [
                "machine",
                f"{machine.get('cpu_model', '?')}, {machine.get('usable_cpus', '?')} cores, "
                f"{machine.get('ram_gib', '?')} GiB RAM, {machine.get('os', '')}",
            ],
            ["python / git", f"{machine.get('python', '?')} / {machine.get('git', '?')}"],
            [
                "load average (1/5/15 min)",
                f"start {load.get('start')}, end {load.get('end')}, "
                f"highest 1-min seen {_num(load.get('max_1min'), 2)}",
            ],
            ["embedding backend (end to end)", results.get("e2e_embedding_backend", "–")],
            ["sizes run", _sizes_run(results)],
        ],
    )
    out += ["", "## Targets", ""]
    targets = results.get("targets") or evaluate_targets(results)
    out += _table(
        ["target", "goal", "measured", "status", "likely cause (quick profile)"],
        [[t["target"], t["goal"], t["measured"], f"**{t['status']}**", t["cause"] or ""] for t in targets],
    )
    not_run = results.get("not_run") or []
    out += ["", "## Not run", ""]
    out += [f"- {item}" for item in not_run] if not_run else ["Everything listed below was run."]
    out += _embedding_section(results)
    out += _facets_section(results)
    out += _clustering_section(results)
    out += _e2e_section(results)
    out += _real_chats_section(results)
    out += _rss_and_scaling_section(results)
    out += _text_section(results)
    out += _assign_section(results)
    out += _replicas_section(results)
    out += _profile_section(results)
    out += [
        "",
        "## Reproduce",
        "",
        "`make bench` (= `python -m benchmarks.run --full`); a shorter run: "
        "`python -m benchmarks.run --full --sizes 1000,10000`; per-section sizes: `--e2e-sizes`, "
        "`--clustering-sizes`. `make bench-smoke` runs every section at tiny sizes "
        "(writes `benchmarks/results/smoke.json` only).",
        "",
    ]
    return "\n".join(out)


def _sizes_run(results: Row) -> str:
    e2e = results.get("e2e", {}).get("sizes_run", [])
    clustering = [r["n"] for r in results.get("clustering", [])]
    return (
        f"end to end {', '.join(_size(n) for n in e2e) or '–'}; "
        f"clustering {', '.join(_size(n) for n in clustering) or '–'}"
    )


def _embedding_section(results: Row) -> list[str]:
    embedding = results.get("embedding")
    if not embedding:
        return []
    out = [
        "",
        "## 1. Embedding throughput",
        "",
        f"{embedding['texts']} texts of {embedding['words_per_text']} words, {embedding['threads']} threads, "
        f"best of {embedding['repeats']}. In-process: `benchmarks.embedding_backends` (fresh process). "
        "gRPC: the same backend, batch size and threads behind the embedding service; *single call* = one "
        "`EmbedTexts` with every text (overhead % = 1 - gRPC/in-process), *gateway pattern* = calls of 256 "
        "texts, 2 in flight. In-process and gRPC runs alternate on a shared machine, so a negative "
        "overhead only means the difference is below the run-to-run noise.",
        "",
    ]
    rows = []
    for run in embedding["runs"]:
        grpc = run["grpc"]
        rows.append(
            [
                run["backend"],
                run["batch_size"],
                _num(run["in_process"]["texts_per_second_best"]),
                _num(grpc["single_call"]["texts_per_second_best"]),
                f"{_num(run['grpc_overhead_percent'])}%",
                _num(grpc["gateway_pattern"]["texts_per_second_best"]),
                _num(run["in_process"].get("rss_after_load_mib")),
                _num(grpc.get("service_rss_end_mib")),
            ]
        )
    out += _table(
        [
            "backend",
            "batch",
            "in-process texts/s",
            "gRPC single call texts/s",
            "gRPC overhead",
            "gRPC gateway pattern texts/s",
            "RSS after load, in-process MiB",
            "service RSS after the runs MiB",
        ],
        rows,
    )
    single = embedding.get("single_text_calls") or []
    if single:
        out += [
            "",
            f"One-text `EmbedTexts` calls, {single[0]['concurrency']} at once ({single[0]['texts']} texts, "
            f"cache off), {DEFAULT_BACKEND_LABEL}: the service's dynamic micro-batching merges concurrent "
            "calls into one model pass.",
            "",
        ]
        out += _table(
            ["micro-batching", "texts/s", "latency p50 ms", "latency p99 ms"],
            [
                [
                    "on (defaults)" if r["merging"] else "off (a model pass per call)",
                    f"**{_num(r['texts_per_second'])}**",
                    _num(r["latency_ms_p50"]),
                    _num(r["latency_ms_p99"]),
                ]
                for r in single
            ],
        )
    conv = embedding.get("conversation_texts")
    if conv:
        out += [
            "",
            f"On the texts the gateway embeds ({conv['texts']} sample conversations cut to the gateway's "
            f"budget, mean {conv['mean_chars']:.0f} characters, {_num(conv['in_process'].get('tokens_per_text'))} "
            f"tokens): {conv['backend']} batch {conv['batch_size']} in-process "
            f"**{_num(conv['in_process']['texts_per_second_best'])} texts/s**, over gRPC "
            f"{_num(conv['grpc']['single_call']['texts_per_second_best'])} (single call, overhead "
            f"{_num(conv['grpc_overhead_percent'])}%) and "
            f"{_num(conv['grpc']['gateway_pattern']['texts_per_second_best'])} (gateway pattern).",
        ]
    return out


def _facets_section(results: Row) -> list[str]:
    facets = results.get("facets")
    if not facets:
        return []
    heuristic = facets["heuristic"]
    out = [
        "",
        "## 2. Facets throughput",
        "",
        f"Over gRPC in calls of {facets['call_size']} conversations, {facets['calls_in_flight']} in flight "
        f"(as the gateway sends them). Heuristic (default): **{_num(heuristic['conversations_per_second'])} "
        f"conversations/s** on {heuristic['conversations']} conversations "
        f"({_num(heuristic['service_cpu_seconds'])} CPU-s in the service).",
        "",
        "LLM-bound: providers `[openai, heuristic]` against the scripted OpenAI-compatible server "
        "(`tests/support/fake_openai.py`) with a fixed latency per request; the bound is "
        "concurrency / latency.",
        "",
    ]
    out += _table(
        [
            "concurrency",
            "latency",
            "conversations",
            "conv/s",
            "bound",
            "% of bound",
            "max in flight",
            "facets CPU-s",
            "values by provider",
        ],
        [
            [
                llm["concurrency"],
                f"{llm['latency_seconds'] * 1000:.0f} ms",
                llm["conversations"],
                _num(llm["conversations_per_second"]),
                _num(llm["bound_per_second"]),
                f"{_num(llm['percent_of_bound'])}%",
                llm["max_requests_in_flight"],
                _num(llm.get("facets_service_cpu_seconds")),
                ", ".join(f"{k} {v}" for k, v in llm["values_by_provider"].items()),
            ]
            for llm in facets["llm"]
        ],
    )
    for llm in facets["llm"]:
        profile = (llm.get("py_spy") or {}).get("facets")
        if profile:
            leaf = "; ".join(f"`{f}` {s}%" for f, s in profile.get("top_leaf_frames", [])[:4])
            own = "; ".join(f"`{f}` {s}%" for f, s in profile.get("top_own_frames", [])[:3])
            out += [
                "",
                f"py-spy of the facets service at concurrency {llm['concurrency']} "
                f"({profile.get('samples', 0)} samples): leaf frames {leaf}; our code {own}.",
            ]
    return out


def _clustering_section(results: Row) -> list[str]:
    rows = results.get("clustering")
    if not rows:
        return []
    stages = list(rows[0]["stage_seconds"])
    out = [
        "",
        "## 3. Clustering",
        "",
        "The clustering pipeline configured as the service is (its settings, "
        f"{rows[0]['threads']} compute thread(s)), one fresh process per size, synthetic 384-d vectors "
        "(60 planted topics), numba warmed up first. Wall seconds per stage.",
        "",
    ]
    out += _table(
        ["n", "total s", *stages, "CPU s", "k", "top", "base", "map", "ARI", "peak RSS MiB"],
        [
            [
                _size(r["n"]),
                _num(r["seconds"], 2),
                *(_num(r["stage_seconds"][s], 2) for s in stages),
                _num(r["cpu_seconds"], 2),
                r["k"],
                r["top_level_clusters"],
                r["base_algorithm"],
                r["map_algorithm"],
                _num(r["ari_vs_planted"], 3),
                _num(r["peak_rss_mib"]),
            ]
            for r in rows
        ],
    )
    return out


def _e2e_section(results: Row) -> list[str]:
    e2e = results.get("e2e")
    if not e2e:
        return []
    out = [
        "",
        "## 4. End to end through the gateway",
        "",
        "All four services as processes (the CLI's supervisor), embedded defaults, sample conversations "
        "(`briefxai_sampledata`); time from the first byte sent to SUCCEEDED. Each run on the defaults "
        "sends conversations the suite has not seen before (another seed per run); *run* names the two "
        "other kinds: the same conversations again, and the cheapest embedded text. *stages done at*: "
        "seconds from the start when facets / embed / clustering had finished (watch stream). *embedded / "
        "cached*: texts the model computed / texts the embedding service's cache or in-batch dedupe "
        "served.",
        "",
    ]
    rows = []
    for run in e2e["runs"]:
        finished = run.get("stage_finished_at", {})
        metrics = run.get("embedding_metrics") or {}
        served = metrics.get("cache_hits", 0.0) + metrics.get("deduplicated", 0.0)
        computed = metrics.get("texts_requested", 0.0) - served
        rows.append(
            [
                _size(run["conversations"]),
                run["upload"],
                run.get("variant") or "defaults, new conversations",
                _num(run["seconds"]),
                f"**{_num(run['conversations_per_second'])}**",
                _num(run["create_seconds"]),
                " / ".join(_num(finished.get(s)) for s in ("FACETS", "EMBED", "CLUSTER")),
                _num(run.get("results_read_seconds")),
                _num(run["processes"]["peak_rss_total_mib"]),
                f"{computed:,.0f} / {served:,.0f}" if metrics else "–",
            ]
        )
    out += _table(
        [
            "n",
            "upload",
            "run",
            "seconds",
            "conv/s",
            "create s",
            "stages done at (facets/embed/cluster) s",
            "results read s",
            "peak RSS MiB",
            "embedded / cached",
        ],
        rows,
    )
    concurrent = e2e.get("concurrent")
    if concurrent:
        out += [
            "",
            f"{concurrent['analyses']} analyses of {concurrent['conversations_each']:,} at once (streamed): "
            f"{_num(concurrent['seconds'])} s, **{_num(concurrent['conversations_per_second'])} conv/s** in "
            f"all; each took {', '.join(_num(s) for s in concurrent['per_analysis_seconds'])} s "
            f"(the gateway runs {results.get('gateway_max_concurrent_analyses', 2)} at once, the rest queue); "
            f"peak RSS {_num(concurrent['processes']['peak_rss_total_mib'])} MiB.",
        ]
    return out


def _process_table(processes: Row) -> list[str]:
    """Peak RSS and CPU seconds per service of one run, and the peak of their sum."""
    at_peak = processes.get("rss_at_total_peak_mib", {})
    when = processes.get("total_peak_at_seconds")
    return _table(
        ["service", "peak RSS MiB", "RSS when the sum peaked MiB", "CPU seconds"],
        [
            [name, _num(value), _num(at_peak.get(name)), _num(processes["cpu_seconds"].get(name))]
            for name, value in processes["peak_rss_mib"].items()
        ]
        + [
            [
                "**all (peak of the sum)**",
                f"**{_num(processes['peak_rss_total_mib'])}**",
                f"at {_num(when)} s of {_num(processes['wall_seconds'])} s" if when is not None else "",
                "",
            ]
        ],
    )


def _stage_seconds(run: Row) -> str:
    """The gateway's stage seconds (summed over batches, so they overlap in time) of one run."""
    seconds: dict[str, float] = (run.get("gateway_stage_metrics") or {}).get("seconds", {})
    return ", ".join(f"{stage} {value:,.1f} s" for stage, value in seconds.items())


def _real_chats_section(results: Row) -> list[str]:
    real = results.get(REAL_CHATS_KEY)
    if not real:
        return []
    out = ["", "## 4b. End to end on real chats", ""]
    if "unavailable" in real:
        return [
            *out,
            f"Not measured: the dev set could not be built here ({real['unavailable']}). It needs "
            "`../shared/eval/chitchat_dev.py` beside the repository and the `chitchat-dataset` package "
            "(a dev dependency).",
        ]
    finished = real.get("stage_finished_at", {})
    out += [
        f"{real['source']}: {real['dev_set_chats']:,} human chats with topic labels, cycled to "
        f"{real['conversations']:,} conversations (each copy with its own ids), streamed through a suite "
        f"of its own on the embedded defaults with the embedding cache {real['embedding_cache']}, after a "
        "small generated warm-up: every copy's text is computed again, as a new chat's would be; "
        "*deduplicated* counts identical texts in one merged batch, which the model computed once. "
        f"Embedding: {real.get('embedding_model', '–')}.",
        "",
    ]
    out += _table(
        [
            "n",
            "real chats",
            "seconds",
            "conv/s",
            "tokens per conversation computed",
            "texts computed / deduplicated or cached",
            "stages done at (facets/embed/cluster) s",
            "peak RSS MiB",
        ],
        [
            [
                _size(real["conversations"]),
                f"{real['unique_conversations']:,} x{real['copies']}",
                _num(real["seconds"]),
                f"**{_num(real['conversations_per_second'])}**",
                _num(real.get("tokens_per_conversation")),
                f"{real['texts_computed']:,} / {real['texts_reused']:,}",
                " / ".join(_num(finished.get(s)) for s in ("FACETS", "EMBED", "CLUSTER")),
                _num(real["processes"]["peak_rss_total_mib"]),
            ]
        ],
    )
    stages = _stage_seconds(real)
    phases = _phases(real)
    if stages or phases:
        out += ["", "Stages: " + _join(phases, f"gateway stage seconds (summed over batches) {stages}")]
    out += ["", *_process_table(real["processes"])]
    return out


def _rss_and_scaling_section(results: Row) -> list[str]:
    if not results.get("e2e"):
        return []
    out: list[str] = []
    largest = largest_streamed(results)
    if largest is not None:
        processes = largest["processes"]
        out += [
            "",
            f"## 5. Peak RSS and CPU per service (largest run: {_size(largest['conversations'])}, streamed)",
            "",
            f"psutil every {processes['interval_seconds']} s ({processes['samples']} samples), "
            "each service with its child processes.",
            "",
        ]
        out += _process_table(processes)
    out += ["", "## 6. Scaling", ""]
    scaling = [t for t in evaluate_targets(results) if "time(100k)/time(10k)" in t["target"]]
    out += [f"- {t['target']}: {t['measured']} ({t['status']})" for t in scaling]
    runs = streamed_runs(results)
    for small, big in pairwise(runs):
        out.append(
            f"- end-to-end time({_size(big['conversations'])})/time({_size(small['conversations'])}), "
            f"for {big['conversations'] / small['conversations']:g}x the conversations: "
            f"{big['seconds'] / small['seconds']:.1f} (not a target; for reference)"
        )
    return out


def _text_section(results: Row) -> list[str]:
    text = results.get("text")
    if not text:
        return []
    out = [
        "",
        "## 7. What the embedded text costs and buys",
        "",
        f"{text['conversations']:,} labelled generated conversations ({text['labels']} topics, data seed "
        f"{text['data_seed']}); {text['backend']} at batch {text['batch_size']} in-process on the text each "
        "embed-text mode and token budget gives; AMI of the clustering service's base clusters with "
        f"the topic labels, mean ± sd over {text['clustering_seeds']} clustering seed(s). The first row is "
        "the default.",
        "",
    ]
    out += _table(
        [
            "embed text",
            "token budget",
            "mean chars",
            "mean tokens",
            "texts/s",
            "tokens/s",
            "AMI (auto k)",
            "AMI (k = topics)",
        ],
        [
            [
                f"`{r['mode']}`",
                r["token_budget"],
                _num(r["mean_chars"], 0),
                _num(r["mean_tokens"]),
                _num(r["texts_per_second"]),
                _num(r["tokens_per_second"]),
                f"{r['ami_auto_k']:.3f} ± {r['ami_auto_k_sd']:.3f}",
                f"{r['ami_k_labels']:.3f} ± {r['ami_k_labels_sd']:.3f}",
            ]
            for r in text["rows"]
        ],
    )
    return out


def _replicas_section(results: Row) -> list[str]:
    run = results.get("replicas")
    if not run:
        return []
    from benchmarks import replicas_bench

    return [
        "",
        "## 9. Embedding replicas",
        "",
        "End to end with 1 and 2 local embedding replicas (`briefxai up --replicas`); on one machine they "
        "share its cores, so the figures say what a second replica costs here, not what a second node "
        "gives (docs/scaling.md).",
        "",
        replicas_bench.markdown(run),
    ]


def _assign_section(results: Row) -> list[str]:
    run = results.get("assign")
    if not run:
        return []
    out = [
        "",
        "## 8. New conversations into an existing analysis",
        "",
        f"AssignConversations on the embedded defaults: an analysis of {run['base_conversations']:,} sample "
        f"conversations (k = {run['k']}, {run['clusters']} clusters), then {run['conversations']:,} new sample "
        f"conversations (another seed) in calls of {run['call_size']:,}, each call a new revision of the "
        "results. *assignment and store*: the gateway's own timing of that step per call (nearest base "
        "centroid, the next revision's counts and distributions with the privacy rule, its transaction); "
        "*whole calls*: as the client saw them, with the facets and embedding of the new conversations. "
        "The new conversations come from the generator of the analysed ones: *unassigned* is the share the "
        "threshold (the 99th percentile of the members' own distances) turned away.",
        "",
    ]
    measured = run.get("measured_by")
    if measured:
        out[-2] += (
            f" This section was measured on its own by `{measured['command']}` ({measured['started_at']}) "
            "and added to this run's results."
        )
    out += _table(
        [
            "conversations",
            "calls",
            "assignment and store s",
            "assignment and store conv/s",
            "whole calls s",
            "whole calls conv/s",
            "centroids (once) s",
            "threshold",
            "unassigned",
            "replay s",
        ],
        [
            [
                f"{run['conversations']:,}",
                len(run["calls"]),
                _num(run["assign_step_seconds"], 3),
                f"**{_num(run['conversations_per_second'])}**",
                _num(run["calls_seconds"], 2),
                _num(run["calls_conversations_per_second"]),
                _num(run["centroid_seconds"], 3),
                _num(run["max_distance"], 3),
                f"{run['unassigned']:,} ({_num(run['unassigned_percent'], 2)}%)",
                _num(run["replay_seconds"], 3) + (" (same answer)" if run.get("replay_same_answer") else ""),
            ]
        ],
    )
    return out


def _profile_section(results: Row) -> list[str]:
    largest = largest_streamed(results)
    profile = (largest or {}).get("py_spy")
    if not profile:
        return [
            "",
            "## Profile",
            "",
            "py-spy was not available for this run; the likely causes above come from stage timings "
            "and CPU seconds.",
        ]
    out = [
        "",
        f"## Profile (py-spy, {_size(largest['conversations'])} streamed run)",  # type: ignore[index]
        "",
        "`py-spy record --nonblocking --rate 10` on each service for the whole run; busiest frames by "
        "share of the samples of active threads.",
        "",
    ]
    rows = []
    for name, summary in sorted(profile.items()):
        leaf = "; ".join(f"`{f}` {s}%" for f, s in summary.get("top_leaf_frames", [])[:4])
        own = "; ".join(f"`{f}` {s}%" for f, s in summary.get("top_own_frames", [])[:3])
        rows.append([name, summary.get("samples", 0), leaf, own])
    out += _table(["service", "samples", "top leaf frames", "top frames of our code"], rows)
    return out
