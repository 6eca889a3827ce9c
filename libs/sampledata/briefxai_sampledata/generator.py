"""Synthetic, labelled conversations for the bundled sample, the eval command and benchmarks.

``generate(n, seed)`` returns ``n`` conversations in the OpenAI chat shape, the same for the same seed.
Each has ``metadata.label`` (for example ``support.password_reset``, ``language.spanish``,
``concerning.fraud``) plus ``category``, ``topic``, ``language``, ``channel`` and ``created_at``.
Templates × slot fillers × a little user-style noise keep the texts varied while the labels stay
recoverable. The text comes from ``scripts.json`` (see :mod:`briefxai_sampledata.scripts`); all of it
was written for this project.

    python -m briefxai_sampledata --n 400 --seed 7 --out examples/sample_conversations.jsonl
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, TypeVar

from briefxai_sampledata.scripts import (
    CATEGORIES,
    CLOSINGS,
    EN_SIGNOFFS,
    FIRST_NAMES,
    GREETING_WORDS,
    GREETINGS,
    LABELS,
    SLOTS,
    SYSTEM_PROMPTS,
    Category,
)

__all__ = ["CATEGORIES", "LABELS", "Conversation", "generate", "iter_conversations", "main", "write"]

Conversation = dict[str, Any]
T = TypeVar("T")


def _dynamic(rng: random.Random, key: str) -> str:
    match key:
        case "order":
            return str(rng.randint(100000, 999999))
        case "amount":
            return f"{rng.randint(9, 480)}.{rng.choice(('00', '99', '49', '95', '20'))}"
        case "days":
            return str(rng.randint(3, 21))
        case "nights":
            return str(rng.randint(3, 12))
        case "seats":
            return str(rng.choice((25, 40, 60, 120, 250, 500, 1200, 3000)))
        case "people":
            return str(rng.randint(2, 10))
        case "budget":
            return str(rng.choice((800, 1200, 1500, 2000, 3000, 5000)))
        case "ticket":
            return f"{rng.choice('ABCDEFGHJK')}{rng.randint(1000, 9999)}"
        case "last4":
            return str(rng.randint(1000, 9999))
        case "name":
            return rng.choice(FIRST_NAMES)
        case "email":
            return f"{rng.choice(FIRST_NAMES).lower()}.{rng.randint(10, 99)}@example.com"
        case "port":
            return str(rng.choice((80, 443, 3000, 5432, 8080, 8443)))
        case "version":
            return f"{rng.randint(1, 5)}.{rng.randint(0, 12)}"
        case "hours":
            return str(rng.randint(2, 48))
    raise KeyError(key)


class _Slots(dict[str, str]):
    """A format_map mapping that draws a slot value on first use and keeps it for the conversation."""

    def __init__(self, maker: _Maker) -> None:
        super().__init__()
        self.maker = maker

    def __missing__(self, key: str) -> str:
        values = SLOTS.get(key)
        value = self.maker.pick(values) if values is not None else _dynamic(self.maker.rng, key)
        self[key] = value
        return value


CHANNELS = ("web_chat", "mobile_app", "email", "api")
# Messages (user + assistant turns) per conversation, 2..8, weighted towards short chats.
TURN_COUNTS = (2, 2, 3, 4, 4, 4, 5, 6, 6, 7, 8)
# How many conversations each user has: most have 1–3.
USER_CONVERSATIONS = (1, 2, 3, 4, 5, 8)
USER_WEIGHTS = (0.55, 0.25, 0.12, 0.04, 0.025, 0.015)
EPOCH = datetime(2025, 1, 6, tzinfo=UTC)
DAYS = tuple((EPOCH + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(180))


# --------------------------------------------------------------------------------------------------
# Generation


def generate(n: int, seed: int = 0) -> list[Conversation]:
    """``n`` conversations, identical for the same ``(n, seed)``."""
    return list(iter_conversations(n, seed))


def iter_conversations(n: int, seed: int = 0) -> Iterator[Conversation]:
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)  # noqa: S311  seeded, reproducible sample data; not for secrets
    categories = rng.choices(CATEGORIES, weights=[c.weight for c in CATEGORIES], k=n)
    users = _user_ids(rng, n)
    make = _Maker(rng).conversation
    for index, (category, user_id) in enumerate(zip(categories, users, strict=True)):
        yield make(index, category, user_id)


def _user_ids(rng: random.Random, n: int) -> list[str]:
    counts = rng.choices(USER_CONVERSATIONS, weights=USER_WEIGHTS, k=max(n, 1))
    ids: list[str] = []
    for user, count in enumerate(counts):
        ids.extend([f"user-{user:06d}"] * count)
        if len(ids) >= n:
            break
    del ids[n:]
    rng.shuffle(ids)
    return ids


class _Maker:
    """Builds one conversation at a time from a shared random stream (fast: ~100k in a few seconds)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.rnd = rng.random

    def pick(self, seq: Sequence[T]) -> T:
        return seq[int(self.rnd() * len(seq))]

    def conversation(self, index: int, category: Category, user_id: str) -> Conversation:
        rnd, pick = self.rnd, self.pick
        scripts = category.scripts
        script = scripts[0] if len(scripts) == 1 else pick(scripts)
        slots = _Slots(self)
        lang = category.language
        turns = pick(TURN_COUNTS)
        messages: list[dict[str, str]] = []
        if category.category in ("support", "sales") and rnd() < 0.08:
            messages.append({"role": "system", "content": pick(SYSTEM_PROMPTS).format_map(slots)})

        user_turns = (turns + 1) // 2
        extra = user_turns - 1
        closing = extra > 0 and category.category != "concerning" and rnd() < 0.5
        # A few distinct scripted exchanges (partial Fisher–Yates); too few for a long chat shortens it.
        pairs = list(script.exchanges)
        wanted = min(max(extra - closing, 0), len(pairs))
        for i in range(wanted):
            j = i + int(rnd() * (len(pairs) - i))
            pairs[i], pairs[j] = pairs[j], pairs[i]
        del pairs[wanted:]
        if closing:
            pairs.append(pick(CLOSINGS[lang]))
        user_texts = [pick(script.openers), *(p[0] for p in pairs)]
        assistant_texts = [pick(script.replies), *(p[1] for p in pairs)]
        ends_with_user = turns % 2 == 1 and len(user_texts) == user_turns

        last = len(user_texts) - 1
        for i, (user, assistant) in enumerate(zip(user_texts, assistant_texts, strict=True)):
            text = self.user_style(user.format_map(slots), lang, first=i == 0)
            messages.append({"role": "user", "content": text})
            if ends_with_user and i == last:
                break
            messages.append({"role": "assistant", "content": assistant.format_map(slots)})

        second = int(rnd() * 86400)
        created = f"{pick(DAYS)}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"
        return {
            "id": f"conv-{index:06d}",
            "user_id": user_id,
            "messages": messages,
            "metadata": {
                "label": category.label,
                "category": category.category,
                "topic": script.topic,
                "language": lang,
                "channel": pick(CHANNELS),
                "created_at": created,
            },
        }

    def user_style(self, text: str, lang: str, *, first: bool) -> str:
        """Small, label-neutral variations in how people type."""
        roll = self.rnd()
        if first and roll < 0.3 and not text.startswith(GREETING_WORDS):
            greeting = self.pick(GREETINGS[lang])
            keep_case = greeting.endswith((". ", "! ", "? ")) or text.startswith(("I ", "I'"))
            text = greeting + (text if keep_case or lang == "de" else text[:1].lower() + text[1:])
        elif roll > 0.9:
            text = text.lower().rstrip(".")
        if lang == "en" and first and self.rnd() < 0.12:
            text += self.pick(EN_SIGNOFFS)
        return text


# --------------------------------------------------------------------------------------------------
# Writing


def write_jsonl(conversations: Iterable[Conversation], out: TextIO) -> int:
    count = 0
    dumps = json.dumps
    for conversation in conversations:
        out.write(dumps(conversation, ensure_ascii=False))
        out.write("\n")
        count += 1
    return count


def write_json(conversations: Iterable[Conversation], out: TextIO) -> int:
    items = list(conversations)
    json.dump(items, out, ensure_ascii=False, indent=1)
    out.write("\n")
    return len(items)


def write_csv(conversations: Iterable[Conversation], out: TextIO) -> int:
    """One row per message; metadata keys become ``metadata.<key>`` columns."""
    writer = csv.writer(out, lineterminator="\n")
    metadata_keys = ("label", "category", "topic", "language", "channel", "created_at")
    writer.writerow(
        ["conversation_id", "user_id", "role", "content", *(f"metadata.{k}" for k in metadata_keys)]
    )
    count = 0
    for conversation in conversations:
        metadata = conversation.get("metadata", {})
        for message in conversation["messages"]:
            writer.writerow(
                [
                    conversation["id"],
                    conversation.get("user_id", ""),
                    message["role"],
                    message["content"],
                    *(metadata.get(k, "") for k in metadata_keys),
                ]
            )
        count += 1
    return count


WRITERS: dict[str, Callable[[Iterable[Conversation], TextIO], int]] = {
    "jsonl": write_jsonl,
    "json": write_json,
    "csv": write_csv,
}


def write(path: str | Path, n: int, seed: int, fmt: str = "jsonl") -> int:
    """Writes ``n`` conversations to ``path`` ("-" for stdout); returns how many were written."""
    writer = WRITERS[fmt]
    conversations = iter_conversations(n, seed)
    if str(path) == "-":
        return writer(conversations, sys.stdout)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    count = writer(conversations, buffer)
    target.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m briefxai_sampledata", description="Write labelled synthetic conversations."
    )
    parser.add_argument("--n", type=int, default=400, help="number of conversations (default 400)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--out", default="-", help="output file, '-' for stdout (default)")
    parser.add_argument(
        "--format", choices=sorted(WRITERS), default=None, help="default: from --out's extension"
    )
    args = parser.parse_args(argv)
    if args.n < 0:
        parser.error("--n must be >= 0")
    fmt = args.format or _format_for(args.out)
    count = write(args.out, args.n, args.seed, fmt)
    if args.out != "-":
        print(f"wrote {count} conversations to {args.out}", file=sys.stderr)
    return 0


def _format_for(out: str) -> str:
    suffix = Path(out).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix == ".json":
        return "json"
    return "jsonl"


if __name__ == "__main__":
    raise SystemExit(main())
