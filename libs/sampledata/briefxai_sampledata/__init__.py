"""Synthetic, labelled conversations: the bundled sample, the eval command, benchmarks and calibration.

``generate(n, seed)`` / ``iter_conversations(n, seed)`` make the same conversations for the same
arguments; ``write`` saves them as JSONL, JSON or CSV. The generator is :mod:`.generator`; the text it
draws on is package data (``scripts.json``, loaded by :mod:`.scripts`).

    python -m briefxai_sampledata --n 400 --seed 7 --out examples/sample_conversations.jsonl
"""

from __future__ import annotations

from briefxai_sampledata.generator import (
    WRITERS,
    Conversation,
    generate,
    iter_conversations,
    main,
    write,
    write_csv,
    write_json,
    write_jsonl,
)
from briefxai_sampledata.scripts import CATEGORIES, LABELS

__all__ = [
    "CATEGORIES",
    "LABELS",
    "WRITERS",
    "Conversation",
    "generate",
    "iter_conversations",
    "main",
    "write",
    "write_csv",
    "write_json",
    "write_jsonl",
]
