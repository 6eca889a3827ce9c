"""PII redaction: each kind of personal detail becomes its placeholder; ordinary text is left alone."""

from __future__ import annotations

import pytest

from briefxai_common.pii import luhn_valid, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+work@example.co.uk today", "write to [EMAIL] today"),
        ("call me at (415) 555-2671 please", "call me at [PHONE] please"),
        ("my number is +44 20 7946 0958.", "my number is [PHONE]."),
        ("llámame al +34 612 345 678", "llámame al [PHONE]"),
        ("card 4111 1111 1111 1111 was declined", "card [CARD] was declined"),
        ("card 4111-1111-1111-1111", "card [CARD]"),
        ("the server at 192.168.10.254 is down", "the server at [IP] is down"),
        ("ipv6 2001:0db8:85a3:0000:0000:8a2e:0370:7334 and fe80::1", "ipv6 [IP] and [IP]"),
        ("see https://example.com/a?b=1 or www.example.org", "see [URL] or [URL]"),
        ("ssn 123-45-6789", "ssn [SSN]"),
        ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN [IBAN] please"),
        ("Hi, my name is John Smith and I need help", "Hi, my name is [NAME] and I need help"),
        ("Hola, me llamo María", "Hola, me llamo [NAME]"),
    ],
)
def test_redacts(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 12345 shipped in 2023, version 3.10.2",
        "1234 5678 9012 3456 is not a valid card number",
        "std::vector<int> in C++",
        "the meeting is at 12:30 tomorrow",
        "My name is not important",
    ],
)
def test_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")


def test_phone_region_setting_decides_national_numbers() -> None:
    text = "ring 020 7946 0958 after lunch"
    assert redact(text, "GB") == "ring [PHONE] after lunch"
    assert redact(text, "US") == text
