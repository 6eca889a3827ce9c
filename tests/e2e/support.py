"""Helpers for the end-to-end tests: paths, running the real console script, reading the SQLite store."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import briefxai_sampledata as sampledata
from briefxai_cli.inputs import ConversationRecord, Message

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SAMPLE = EXAMPLES / "sample_conversations.jsonl"
BAD_RECORDS = EXAMPLES / "bad_records.jsonl"


def briefxai_command() -> list[str]:
    script = shutil.which("briefxai", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "briefxai_cli"]


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 900.0, data_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs the real ``briefxai`` console script; returns its exit code, stdout and stderr. ``data_dir``:
    a suite's, where the CLI finds the suite's admin key (as it does in ./briefxai-data after ``up``)."""
    env = dict(os.environ, COLUMNS="200", GRPC_VERBOSITY="ERROR")
    if data_dir is not None:
        env.pop("BRIEFXAI_API_KEY", None)
        env["BRIEFXAI_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [*briefxai_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
        env=env,
        check=False,
    )


def rows_mentioning(store: Path, value: str) -> dict[str, int]:
    """Rows per table of the SQLite store in which any column equals or contains ``value``."""
    connection = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not name.startswith("sqlite_") and name != "alembic_version"
        ]
        found: dict[str, int] = {}
        for table in tables:
            columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
            condition = " OR ".join(f'instr(CAST("{c}" AS TEXT), ?) > 0' for c in columns)
            (count,) = connection.execute(
                f'SELECT count(*) FROM "{table}" WHERE {condition}',  # noqa: S608  names from the schema
                [value] * len(columns),
            ).fetchone()
            if count:
                found[table] = int(count)
        return found
    finally:
        connection.close()


def generated(n: int, seed: int) -> list[ConversationRecord]:
    """``n`` generated sample conversations as the CLI reader would return them."""
    return [
        ConversationRecord(
            c["id"],
            c["user_id"],
            tuple(Message(m["role"], m["content"]) for m in c["messages"]),
            c["metadata"],
            i + 1,
        )
        for i, c in enumerate(sampledata.generate(n, seed))
    ]
