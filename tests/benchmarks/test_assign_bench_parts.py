"""Section 8 (`assign`) without measuring: its target row, its Markdown section and its place in the plans."""

from __future__ import annotations

from typing import Any

from benchmarks.report import MET, NOT_MEASURED, NOT_MET, evaluate_targets, render_markdown
from benchmarks.run import SECTIONS, parse_args

TARGET = "assigning new conversations (assignment and store, without facets and embedding)"


def assign_row(rate: float) -> dict[str, Any]:
    return {
        "base_conversations": 10_000,
        "conversations": 5_000,
        "call_size": 1_000,
        "calls": [{"conversations": 1000, "seconds": 4.0, "revision": i + 1} for i in range(5)],
        "assign_step_seconds": 5_000 / rate,
        "conversations_per_second": rate,
        "calls_seconds": 25.0,
        "calls_conversations_per_second": 200.0,
        "centroid_seconds": 0.3,
        "store_seconds": {"store_save_revision": 2.5, "store_load_revision_state": 0.4},
        "k": 100,
        "clusters": 142,
        "max_distance": 0.4268,
        "unassigned": 47,
        "unassigned_percent": 0.94,
        "replay_same_answer": True,
        "replay_seconds": 0.05,
    }


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["target"]: row for row in rows}


def test_the_target_reads_the_assignment_and_store_rate() -> None:
    fast = by_name(evaluate_targets({"assign": assign_row(7463.0)}))[TARGET]
    assert fast["status"] == MET and fast["goal"] == ">= 1,000 conv/s"
    assert fast["measured"].startswith("7,463 conv/s (5,000 onto an analysis of 10,000 in calls of 1,000")
    assert "whole calls with facets and embedding 200.0 conv/s" in fast["measured"]
    slow = by_name(evaluate_targets({"assign": assign_row(800.0)}))[TARGET]
    assert slow["status"] == NOT_MET
    assert "the revisions' transactions 2.50 s" in slow["cause"] and "k = 100" in slow["cause"]
    missing = by_name(evaluate_targets({}))[TARGET]
    assert (missing["status"], missing["measured"]) == (NOT_MEASURED, "not run")


def test_the_section_in_the_report() -> None:
    row = assign_row(7463.0)
    text = render_markdown({"assign": row})
    assert "## 8. New conversations into an existing analysis" in text
    assert (
        "| 5,000 | 5 | 0.670 | **7,463.0** | 25.00 | 200.0 | 0.300 | 0.427 | 47 (0.94%) | 0.050 (same answer) |"
        in text
    )
    assert "measured on its own" not in text
    row["measured_by"] = {"command": "python -m benchmarks.run --full --sections assign", "started_at": "T"}
    assert (
        "measured on its own by `python -m benchmarks.run --full --sections assign` (T)"
        in render_markdown({"assign": row})
    )
    assert "## 8." not in render_markdown({})


def test_smoke_runs_a_small_assign_section_and_full_selects_it() -> None:
    assert "assign" in SECTIONS
    smoke, _ = parse_args(["--smoke"])
    assert "assign" in smoke.sections
    assert smoke.assign_conversations <= 500 and smoke.assign_base <= 500
    assert smoke.assign_call_size < smoke.assign_conversations  # more than one revision
    full, _ = parse_args(["--full", "--sections", "assign"])
    assert full.sections == ("assign",) and full.assign_base == 10_000
