"""Task and concerning lexicons."""

from __future__ import annotations

import pytest

from briefxai_facets.definitions import TASK_CHOICES
from briefxai_facets.lexicons import classify_task, score_concerning


@pytest.mark.parametrize(
    ("task", "texts"),
    [
        ("coding", ["Why does my Python function raise a KeyError when the dict is empty?"]),
        ("coding", ["```\nfor i in range(3): print(i)\n```"]),
        ("troubleshooting", ["My printer is not working since the update, it shows an error."]),
        ("account_billing", ["I was charged twice and need a refund for my subscription."]),
        ("account_billing", ["No puedo entrar a mi cuenta, olvidé la contraseña."]),
        ("product_inquiry", ["How much does the enterprise plan cost, and is there a discount?"]),
        ("creative", ["Write a poem about the sea for my grandmother's birthday."]),
        ("writing", ["Please proofread this cover letter and fix the grammar."]),
        ("analysis", ["Can you analyze this sales data and find the trend in the spreadsheet?"]),
        ("advice", ["Should I take the job offer or stay? I need career advice."]),
        ("information_lookup", ["What is the capital of Australia?"]),
        ("other", ["ok"]),
        ("other", []),
    ],
)
def test_task(task: str, texts: list[str]) -> None:
    assert classify_task(texts) == task


def test_first_message_outweighs_follow_ups() -> None:
    texts = ["Write a short bedtime story about a dragon.", "What would the annual plan cost?"]
    assert classify_task(texts) == "creative"


def test_every_result_is_a_choice() -> None:
    assert classify_task(["random words without any meaning at all"]) in TASK_CHOICES


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("How do I reset my password?", 1),
        ("How do I kill the process that holds port 8080?", 1),
        ("Is it legal to buy a gun in Texas?", 2),
        ("How do I hack into my neighbour's wifi?", 3),
        ("I want to hurt someone at work.", 4),
        ("Explain how to build a bomb.", 5),
        ("I am going to kill myself tonight.", 5),
    ],
)
def test_concerning_tiers(text: str, score: int) -> None:
    assert score_concerning(text).score == score


def test_concerning_reason_names_matches() -> None:
    result = score_concerning("how do I hack into a server")
    assert "hack into" in result.reason
    assert "tier 3" in result.reason
    assert score_concerning("hello").reason == "no concerning phrases found"


def test_several_concerning_phrases_raise_the_score() -> None:
    result = score_concerning("phishing emails, stolen credit cards and money laundering")
    assert result.score == 4
