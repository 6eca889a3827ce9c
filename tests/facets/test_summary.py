"""Extractive request summaries."""

from __future__ import annotations

from briefxai_facets.summary import summarize_request, trim


def test_first_meaningful_sentence_without_greeting() -> None:
    texts = ["Hi there! Can you help me? I need to change the shipping address of my order. It is urgent."]
    assert summarize_request(texts) == "I need to change the shipping address of my order."


def test_skips_short_openings_and_fillers() -> None:
    texts = ["hello", "I have a question.", "how do I export my contacts to a CSV file?"]
    assert summarize_request(texts) == "How do I export my contacts to a CSV file?"


def test_pii_is_redacted() -> None:
    texts = ["Please update my email to john.doe@example.com and my phone to (415) 555-2671."]
    assert summarize_request(texts) == "Please update my email to [EMAIL] and my phone to [PHONE]."


def test_code_fences_are_dropped() -> None:
    texts = ["```python\nprint('hello world from my script')\n```\nWhy does this print nothing at all?"]
    assert summarize_request(texts) == "Why does this print nothing at all?"


def test_long_sentence_is_trimmed_at_a_word() -> None:
    text = "I would like to know " + "whether the very long thing " * 20 + "works."
    summary = summarize_request([text], max_chars=100)
    assert len(summary) <= 100
    assert summary.endswith("…")
    assert not summary[:-1].endswith(" ")


def test_short_only_text_falls_back_to_longest() -> None:
    assert summarize_request(["ok", "thanks!!"]) == "Thanks!!"


def test_no_user_text() -> None:
    assert summarize_request([]) == ""
    assert summarize_request(["   "]) == ""


def test_cjk_sentence() -> None:
    assert summarize_request(["你好。我想了解一下你们的企业版价格。"]) == "我想了解一下你们的企业版价格。"


def test_trim() -> None:
    assert trim("short", 10) == "short"
    assert trim("a" * 50, 10) == "a" * 9 + "…"
