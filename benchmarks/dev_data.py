"""The real labelled dev set: 2,873 human chats with 34 topic labels (BYU Chit Chat corpus).

``shared/eval/chitchat_dev.py`` (beside the repository) builds it from the PyPI package
``chitchat-dataset`` (a dev dependency; the corpus ships inside the wheel, no network) and leaves out
the reserved held-out ids, which nothing here may read or tune to. The file is built once into
``briefxai-data/eval/`` and reused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from benchmarks.common import REPO
from briefxai_cli.inputs import ConversationRecord, record_from_object

BUILDER = REPO.parent / "shared" / "eval" / "chitchat_dev.py"
DEV_FILE = REPO / "briefxai-data" / "eval" / "chitchat_dev.jsonl"
LABEL_KEY = "label"


class DevSetUnavailable(RuntimeError):
    """The builder script or the chitchat-dataset package is missing."""


def dev_set_path() -> Path:
    """The dev set's JSONL file, built on first use."""
    if DEV_FILE.exists() and DEV_FILE.stat().st_size > 0:
        return DEV_FILE
    if not BUILDER.exists():
        raise DevSetUnavailable(f"{BUILDER} not found (shared/ beside the repository)")
    DEV_FILE.parent.mkdir(parents=True, exist_ok=True)
    partial = DEV_FILE.with_suffix(".partial")
    completed = subprocess.run(
        [sys.executable, str(BUILDER), "--out", str(partial)], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise DevSetUnavailable(f"{BUILDER.name} failed: {(completed.stderr or completed.stdout)[-1000:]}")
    partial.replace(DEV_FILE)
    return DEV_FILE


def load_dev_set(limit: int = 0) -> list[dict[str, Any]]:
    """The dev chats as OpenAI-shaped records (``metadata.label`` is the topic); ``limit`` 0 = all."""
    records: list[dict[str, Any]] = []
    with dev_set_path().open(encoding="utf-8") as lines:
        for line in lines:
            records.append(json.loads(line))
            if limit and len(records) >= limit:
                break
    return records


def repeated(records: list[dict[str, Any]], total: int) -> list[dict[str, Any]]:
    """``total`` records cycling through ``records``, each copy with its own id and user id suffix, so
    that a run of ~10k reuses the real texts (the embedding cache is keyed by text: a cold run must use
    a fresh suite or a fresh cache)."""
    out: list[dict[str, Any]] = []
    for i in range(total):
        record = dict(records[i % len(records)])
        copy = i // len(records)
        if copy:
            record["id"] = f"{record['id']}~{copy}"
            record["user_id"] = f"{record.get('user_id', '')}~{copy}"
        out.append(record)
    return out


def as_records(items: Iterable[Mapping[str, Any]]) -> list[ConversationRecord]:
    """The CLI's validated records of ``items``, in order (the client's own input checks; empty messages
    are left out as the CLI does). A rejected item raises ``ValueError``: the dev set is built clean."""
    seen: dict[str, int] = {}
    records: list[ConversationRecord] = []
    for line, item in enumerate(items, start=1):
        outcome = record_from_object(dict(item), line, seen)
        if isinstance(outcome, list):
            raise ValueError(f"dev set record {line}: " + "; ".join(str(error) for error in outcome))
        records.append(outcome)
    return records
