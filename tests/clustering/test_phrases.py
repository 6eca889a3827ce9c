"""The naming tokeniser: contractions, numbers, code, URLs, stop words in five languages, phrases."""

from __future__ import annotations

import pytest

from briefxai_clustering.phrases import CHAT_FILLERS, STOP_WORDS, Casing, phrases, segments, stem, words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It doesn't work, I'm stuck and I don't know why", ["work", "stuck"]),
        ("Don’t worry, it’s fine", ["worry"]),
        ("my mom's birthday", ["mom", "birthday"]),
        ("Derivative of 15 240 2x 15 and 3.5%, $409.95 or 1,200 items", ["derivative", "items"]),
        ("order 950993 ref a1d7aee2 0x1f3 for mp3 files", ["order", "ref", "files"]),
        (
            "error DNS_PROBE_FINISHED_NXDOMAIN in os.path.join and call foo() today",
            ["error", "call", "today"],
        ),
        ("open /etc/hosts or C:\\Users\\me\\file.txt or src/app/main", ["open"]),
        ("see https://example.com/a?b=1 and www.example.org or mail aisha.19@example.com", ["mail"]),
        ("write to [EMAIL] or <PHONE> as {name} today", ["write", "today"]),
        ("run ```pip install x``` then `make test` please", ["run"]),
        ("hi hello hey thanks yeah lol hahaha ok okay um like just really know think going got want", []),
        ("TP-Link router self-harm", ["tp-link", "router", "self-harm"]),
    ],
)
def test_words_drop_contractions_numbers_code_urls_and_fillers(text: str, expected: list[str]) -> None:
    assert words(text) == expected


def test_no_fragments_of_contractions() -> None:
    text = "doesn't isn't can't won't I'm I'd you're we've they'll that's let's y'all"
    assert words(text) == []
    assert not {"doesn", "isn", "don", "ll", "ve", "re"} & set(phrases(text))


@pytest.mark.parametrize(
    "text",
    [
        "Olá, preciso de ajuda para uma encomenda que não chegou",  # Portuguese
        "Hola, necesito ayuda para una devolución de mi pedido",  # Spanish
        "Bonjour, mon colis n'est pas arrivé, je suis très déçu",  # French
        "Hallo, ich habe eine Frage zu meiner Rechnung und die Lieferung",  # German
        "Ciao, vorrei sapere perché il pacco non è arrivato",  # Italian
    ],
)
def test_function_words_of_other_languages_are_stop_words(text: str) -> None:
    found = set(words(text))
    function_words = {"para", "uma", "que", "de", "mon", "je", "est", "pas", "und", "die", "ich", "il", "non"}
    assert not found & function_words
    assert found  # the content words stay: "encomenda", "pedido", "colis", "rechnung", "pacco"


def test_ambiguous_words_are_stop_words_only_in_non_english_text() -> None:
    assert "die" in words("I don't want my plants to die")
    assert "die" not in words("Ich habe die Rechnung und die Lieferung nicht bekommen")


def test_phrases_are_one_to_three_words_without_stop_words_at_the_ends() -> None:
    found = phrases("Can you help me reset my password? The pets could talk about peanut butter")
    assert "reset password" in found  # "my" is skipped without breaking the run
    assert "pets could talk" in found  # a stop word inside is fine
    assert "peanut butter" in found
    assert "password pets" not in found  # punctuation breaks a run
    for phrase in found:
        parts = phrase.split()
        assert 1 <= len(parts) <= 3
        assert parts[0] not in STOP_WORDS and parts[-1] not in STOP_WORDS
        assert len(set(parts)) == len(parts)


def test_dropped_tokens_break_phrases() -> None:
    assert "order stuck" not in phrases("order 950993 stuck")
    assert "docker compose" in phrases("docker compose fails")
    assert "docker fails" not in phrases("docker postgres:16 fails")


def test_segments_mark_sentence_starts_for_casing() -> None:
    casing = Casing()
    for text in ("Docker is slow. my Docker image", "we use Docker daily", "Docker compose"):
        segments(text, casing)
    assert casing.word("docker", uses=3) == "Docker"
    assert casing.word("compose", uses=1) == "compose"  # only ever written at a sentence start
    assert casing.word("image", uses=1) == "image"


def test_stem_and_filler_list() -> None:
    assert stem("charged") == stem("charge") == stem("charges") == stem("charging")
    assert stem("computers") == stem("computer")
    assert {
        "hi",
        "hello",
        "hey",
        "thanks",
        "yeah",
        "lol",
        "haha",
        "ok",
        "okay",
        "um",
        "like",
        "just",
    } <= CHAT_FILLERS
