"""The text behind the sample generator: categories, conversation scripts and slot fillers.

The text lives in ``scripts.json`` beside this module (package data); this module loads it once and
gives it types. A :class:`Category` is one label (``support.refund``); it has one or more
:class:`Script` s whose openers, first replies and follow-up exchanges all fit together, so any
combination reads as a real conversation. ``{slot}`` placeholders are filled per conversation (see
``generator._Slots``). Everything in ``scripts.json`` was written for this project.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = [
    "CATEGORIES",
    "CLOSINGS",
    "EN_SIGNOFFS",
    "FIRST_NAMES",
    "GREETINGS",
    "GREETING_WORDS",
    "LABELS",
    "SLOTS",
    "SYSTEM_PROMPTS",
    "Category",
    "Script",
]

DATA_FILE = "scripts.json"


@dataclass(frozen=True)
class Script:
    """One kind of conversation: a first user turn, a first reply, then paired (user, assistant) exchanges."""

    topic: str
    openers: tuple[str, ...]
    replies: tuple[str, ...]
    exchanges: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Category:
    label: str
    weight: float
    language: str
    scripts: tuple[Script, ...]

    @property
    def category(self) -> str:
        return self.label.split(".", 1)[0]


def _pairs(items: list[list[str]]) -> tuple[tuple[str, str], ...]:
    return tuple((user, assistant) for user, assistant in items)


def _script(item: dict[str, Any]) -> Script:
    return Script(item["topic"], tuple(item["openers"]), tuple(item["replies"]), _pairs(item["exchanges"]))


def _category(item: dict[str, Any]) -> Category:
    return Category(
        item["label"], float(item["weight"]), item["language"], tuple(_script(s) for s in item["scripts"])
    )


def _load() -> dict[str, Any]:
    text = resources.files("briefxai_sampledata").joinpath(DATA_FILE).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


_DATA = _load()

SLOTS: dict[str, tuple[str, ...]] = {name: tuple(values) for name, values in _DATA["slots"].items()}
FIRST_NAMES: tuple[str, ...] = tuple(_DATA["first_names"])
CATEGORIES: tuple[Category, ...] = tuple(_category(item) for item in _DATA["categories"])
LABELS: tuple[str, ...] = tuple(c.label for c in CATEGORIES)
GREETINGS: dict[str, tuple[str, ...]] = {lang: tuple(words) for lang, words in _DATA["greetings"].items()}
GREETING_WORDS: tuple[str, ...] = tuple(_DATA["greeting_words"])
CLOSINGS: dict[str, tuple[tuple[str, str], ...]] = {
    lang: _pairs(pairs) for lang, pairs in _DATA["closings"].items()
}
EN_SIGNOFFS: tuple[str, ...] = tuple(_DATA["en_signoffs"])
SYSTEM_PROMPTS: tuple[str, ...] = tuple(_DATA["system_prompts"])

del _DATA
