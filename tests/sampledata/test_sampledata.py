"""The sample generator: deterministic, every label present, well-formed conversations."""

from __future__ import annotations

import io
import json
import re
import string
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import briefxai_sampledata as sampledata
from briefxai_cli.inputs import parse_conversations
from briefxai_sampledata.scripts import CATEGORIES, CLOSINGS, GREETINGS, LABELS, SLOTS, SYSTEM_PROMPTS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DYNAMIC_SLOTS = {"order", "amount", "days", "nights", "seats", "people", "budget", "ticket", "last4", "name",
                 "email", "port", "version", "hours"}  # fmt: skip
PLACEHOLDER = re.compile(r"\{[a-z_0-9]+\}")


def test_same_seed_same_conversations_other_seed_different() -> None:
    assert sampledata.generate(300, 5) == sampledata.generate(300, 5)
    assert sampledata.generate(300, 5) != sampledata.generate(300, 6)
    assert sampledata.generate(0, 5) == []


def test_bundled_sample_is_the_documented_command_output() -> None:
    buffer = io.StringIO()
    sampledata.write_jsonl(sampledata.iter_conversations(400, 7), buffer)
    assert (EXAMPLES / "sample_conversations.jsonl").read_text(encoding="utf-8") == buffer.getvalue()


def test_every_label_appears_and_metadata_is_consistent() -> None:
    conversations = sampledata.generate(3000, 11)
    labels = Counter(c["metadata"]["label"] for c in conversations)
    assert set(labels) == set(LABELS)
    assert len(LABELS) >= 20
    for conversation in conversations:
        metadata = conversation["metadata"]
        assert metadata["category"] == metadata["label"].split(".")[0]
        assert all(isinstance(v, str) for v in metadata.values())
        if metadata["category"] == "language":
            assert metadata["language"] in {"es", "fr", "de", "pt"}
        else:
            assert metadata["language"] == "en"
    for required in ("support.password_reset", "technical.docker", "sales.demo_request", "general.recipes",
                     "language.spanish", "language.french", "language.german", "language.portuguese",
                     "concerning.self_harm", "concerning.threat", "concerning.fraud"):  # fmt: skip
        assert required in labels


def test_conversations_are_multi_turn_and_well_formed() -> None:
    conversations = sampledata.generate(2000, 3)
    ids = [c["id"] for c in conversations]
    assert len(set(ids)) == len(ids)
    turn_counts: Counter[int] = Counter()
    for conversation in conversations:
        messages = conversation["messages"]
        if messages[0]["role"] == "system":
            messages = messages[1:]
        turn_counts[len(messages)] += 1
        assert 2 <= len(messages) <= 8
        assert [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2) + ["user"] * (
            len(messages) % 2
        )
        for message in conversation["messages"]:
            assert message["content"].strip()
            assert not PLACEHOLDER.search(message["content"]), message["content"]
        texts = [m["content"] for m in messages]
        assert len(set(texts)) == len(texts), "a turn was repeated"
    assert len(turn_counts) >= 6, "conversation lengths should vary"


def test_most_users_have_one_to_three_conversations() -> None:
    conversations = sampledata.generate(2000, 4)
    per_user = Counter(c["user_id"] for c in conversations)
    share = sum(1 for n in per_user.values() if n <= 3) / len(per_user)
    assert share >= 0.8
    assert max(per_user.values()) > 1


def test_texts_vary_within_a_label() -> None:
    conversations = sampledata.generate(2000, 9)
    firsts: dict[str, set[str]] = {}
    for conversation in conversations:
        first_user = next(m["content"] for m in conversation["messages"] if m["role"] == "user")
        firsts.setdefault(conversation["metadata"]["label"], set()).add(first_user)
    for label, texts in firsts.items():
        count = sum(1 for c in conversations if c["metadata"]["label"] == label)
        assert len(texts) >= min(count, 8) * 0.5, label


def test_every_template_slot_is_known() -> None:
    templates: list[str] = list(SYSTEM_PROMPTS)
    for category in CATEGORIES:
        for script in category.scripts:
            templates += [*script.openers, *script.replies]
            templates += [text for pair in script.exchanges for text in pair]
    templates += [text for pairs in CLOSINGS.values() for pair in pairs for text in pair]
    templates += [g for greetings in GREETINGS.values() for g in greetings]
    for template in templates:
        for _, name, _, _ in string.Formatter().parse(template):
            if name is not None:
                assert name in SLOTS or name in DYNAMIC_SLOTS, (name, template)


def test_generated_records_pass_the_input_reader_in_every_format(tmp_path: Path) -> None:
    for fmt in ("jsonl", "json", "csv"):
        path = tmp_path / f"sample.{fmt}"
        assert sampledata.write(path, 150, 2, fmt) == 150
        result = parse_conversations(path.read_bytes(), fmt)  # type: ignore[arg-type]
        assert not result.errors and not result.warnings, fmt
        expected = sampledata.generate(150, 2)
        assert [r.to_dict() for r in result.records] == expected, fmt


def test_module_command_writes_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.jsonl"
    assert sampledata.main(["--n", "12", "--seed", "7", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert [json.loads(line) for line in lines] == sampledata.generate(12, 7)
    assert "wrote 12 conversations" in capsys.readouterr().err


def test_python_dash_m_runs_the_generator_from_its_package_data() -> None:
    """``python -m briefxai_sampledata`` (the command examples/README.md documents) in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-m", "briefxai_sampledata", "--n", "5", "--seed", "3"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
        timeout=60,
    )
    assert [json.loads(line) for line in result.stdout.splitlines()] == sampledata.generate(5, 3)
