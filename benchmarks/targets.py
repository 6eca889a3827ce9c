"""The benchmark targets, one row each: where the figure is in the results JSON, its bound and its wording.

:func:`benchmarks.report.evaluate_targets` reads :data:`TARGETS` in order; the likely cause of a
missed target is prose computed in :mod:`benchmarks.report` (``CAUSES``, named here by key).

**Metric paths** are dotted keys into the results JSON (``e2e-real.processes.peak_rss_total_mib``);
the first part may name a run instead of a key:

- ``e2e:<n>`` the cold end-to-end run of ``n`` conversations, streamed (not the warm-cache or
  cheaper-text variants); ``e2e:largest`` the largest of them;
- ``clustering:<n>`` the clustering run of ``n`` vectors;
- ``facets.llm[*].<key>`` one row per item of the list.

A run that reports ``{"unavailable": reason}`` instead of its figures (the real-chat run without its
dev set) is not measured. With ``per``, the figure is ``scale * metric / per`` (a ratio or a percentage).

**Wording** is ``str.format`` templates over: ``value`` (the figure compared with ``threshold``),
``threshold``, ``compare``, ``unit``, ``row`` (the run or item the metric path starts at, e.g.
``row[conversations]``), ``size`` (that run's size: ``100k``), ``reason`` (why a section is
unavailable) and ``at[<path>]`` (any metric path). A missing or ``None`` field reads ``–``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

E2E_TARGET_RATE = 250.0  # conversations/s at 100k (generated), and on the real dev set repeated to ~10k
E2E_VS_EMBEDDING = 80.0  # % of the embedding backend's in-process throughput
LLM_BOUND_PERCENT = 90.0
RSS_LIMIT_MIB = 1.5e9 / 2**20  # the 1.5 GB (1,430.5 MiB), all services together
CLUSTERING_100K_SECONDS = 30.0
ASSIGN_TARGET_RATE = 1000.0  # new conversations/s into an analysis, assignment and store step only
SCALING_LIMIT = 11.0
REAL_CHATS_KEY = "e2e-real"  # the results key of the real-chat run (the section's name)

CONVERSATION_TEXTS = "embedding.conversation_texts"  # the embedding backend alone on the e2e texts


@dataclass(frozen=True)
class Target:
    name: str
    metric: str  # a metric path (see the module docstring)
    compare: Literal[">=", "<="]
    threshold: float
    unit: str
    goal: str
    measured: str
    per: str | None = None  # a metric path: the figure is scale * metric / per
    scale: float = 1.0
    cause: str = ""  # key of benchmarks.report.CAUSES, asked when the target is not met
    not_run: str | None = "–"  # measured when the metric is missing; None: no row at all
    not_run_name: str | None = None  # name and goal when the metric is missing (default: as measured)
    not_run_goal: str | None = None
    unavailable: str = "–"  # measured when the section reports {"unavailable": reason}
    # Read when `metric` is missing: shown as not measured; when it misses the bound too, the cause
    # is `fallback_cause` followed by the row's cause for the fallback run.
    fallback: str | None = None
    fallback_measured: str = ""
    fallback_cause: str = ""


RSS_GOAL = "{compare} 1.5 GB ({threshold:,.0f} {unit})"

TARGETS: tuple[Target, ...] = (
    Target(
        name="end-to-end at 100k",
        metric="e2e:100000.conversations_per_second",
        compare=">=",
        threshold=E2E_TARGET_RATE,
        unit="conv/s",
        goal="{compare} {threshold:g} {unit}",
        measured="{value:,.1f} {unit}",
        cause="end_to_end",
        not_run="no end-to-end run",
        fallback="e2e:largest.conversations_per_second",
        fallback_measured="100k not run; {value:,.1f} {unit} at {size}",
        fallback_cause="already below at {size}: ",
    ),
    Target(
        name="end to end on real chats",
        metric=f"{REAL_CHATS_KEY}.conversations_per_second",
        compare=">=",
        threshold=E2E_TARGET_RATE,
        unit="conv/s",
        goal="{compare} {threshold:g} {unit}",
        measured=(
            "{value:,.1f} {unit} ({row[conversations]:,} conversations = {row[unique_conversations]:,} real "
            "chats x{row[copies]}, {row[tokens_per_conversation]:,.0f} tokens per conversation computed, "
            "cache off)"
        ),
        cause="real_chats",
        not_run="not run",
        unavailable="dev set unavailable: {reason}",
    ),
    Target(
        name="end-to-end vs embedding in-process ({size})",
        metric="e2e:largest.conversations_per_second",
        per=f"{CONVERSATION_TEXTS}.in_process.texts_per_second_best",
        scale=100.0,
        compare=">=",
        threshold=E2E_VS_EMBEDDING,
        unit="%",
        goal=f"{{compare}} {{threshold:g}}{{unit}} of {{at[{CONVERSATION_TEXTS}.backend]}} in-process",
        measured=(
            f"{{row[conversations_per_second]:,.1f}} conv/s = {{value:.0f}}{{unit}} of "
            f"{{at[{CONVERSATION_TEXTS}.in_process.texts_per_second_best]:,.1f}} texts/s "
            f"(same conversation texts, batch {{at[{CONVERSATION_TEXTS}.batch_size]}})"
        ),
        cause="versus_embedding",
        not_run_name="end-to-end vs embedding in-process",
        not_run_goal="{compare} {threshold:g}{unit}",
    ),
    Target(
        name="LLM-bound facets, concurrency {row[concurrency]}",
        metric="facets.llm[*].percent_of_bound",
        compare=">=",
        threshold=LLM_BOUND_PERCENT,
        unit="%",
        goal="{compare} {threshold:g}{unit} of {row[bound_per_second]:g}/s",
        measured="{row[conversations_per_second]:,.1f} conv/s = {value:.1f}{unit}",
        cause="llm_bound",
        not_run=None,
    ),
    Target(
        name="peak RSS of all services ({size} run)",
        metric="e2e:largest.processes.peak_rss_total_mib",
        compare="<=",
        threshold=RSS_LIMIT_MIB,
        unit="MiB",
        goal=RSS_GOAL,
        measured="{value:,.0f} {unit}",
        cause="rss",
        not_run_name="peak RSS of all services",
    ),
    Target(
        name="peak RSS of all services (real chats run)",
        metric=f"{REAL_CHATS_KEY}.processes.peak_rss_total_mib",
        compare="<=",
        threshold=RSS_LIMIT_MIB,
        unit="MiB",
        goal=RSS_GOAL,
        measured="{value:,.0f} {unit}",
        cause="rss_real_chats",
        not_run="not run",
    ),
    Target(
        name="clustering 100k x 384 incl. hierarchy and map",
        metric="clustering:100000.seconds",
        compare="<=",
        threshold=CLUSTERING_100K_SECONDS,
        unit="s",
        goal="{compare} {threshold:g} {unit}",
        measured="{value:.1f} {unit}",
        cause="clustering",
        not_run="100k not run",
        not_run_name="clustering 100k x 384",
    ),
    Target(
        name="assigning new conversations (assignment and store, without facets and embedding)",
        metric="assign.conversations_per_second",
        compare=">=",
        threshold=ASSIGN_TARGET_RATE,
        unit="conv/s",
        goal="{compare} {threshold:,g} {unit}",
        measured=(
            "{value:,.0f} {unit} ({row[conversations]:,} onto an analysis of {row[base_conversations]:,} in calls "
            "of {row[call_size]:,}; whole calls with facets and embedding {row[calls_conversations_per_second]:,.1f} "
            "{unit})"
        ),
        cause="assign",
        not_run="not run",
    ),
    Target(
        name="end-to-end time(100k)/time(10k)",
        metric="e2e:100000.seconds",
        per="e2e:10000.seconds",
        compare="<=",
        threshold=SCALING_LIMIT,
        unit="",
        goal="{compare} {threshold:g}",
        measured="{value:.1f}",
        cause="end_to_end_scaling",
        not_run="100k or 10k not run",
    ),
    Target(
        name="clustering time(100k)/time(10k)",
        metric="clustering:100000.seconds",
        per="clustering:10000.seconds",
        compare="<=",
        threshold=SCALING_LIMIT,
        unit="",
        goal="{compare} {threshold:g}",
        measured="{value:.1f}",
        cause="clustering_scaling",
        not_run=None,
    ),
)
