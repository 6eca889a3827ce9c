"""Secret detection: each kind of credential becomes ``[SECRET]``; ordinary prose is left alone."""

from __future__ import annotations

import pytest

from briefxai_common.apikeys import generate_api_key
from briefxai_common.pii import redact, redact_secrets

PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "-----END RSA PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my key is sk-proj-AbC123defGHI456jklMNO789pqr ok", "my key is [SECRET] ok"),
        ("OPENAI_API_KEY sk-abcdefghij0123456789ABCDEFGHIJ", "OPENAI_API_KEY [SECRET]"),
        ("header Authorization: Bearer abc.def.ghi123", "header [SECRET]"),
        ('curl -H "Authorization: Basic dXNlcjpwYXNz" host', 'curl -H "[SECRET]" host'),
        ("send Bearer 9f8e7d6c5b4a39281706 with it", "send [SECRET] with it"),
        ("id AKIAIOSFODNN7EXAMPLE here", "id [SECRET] here"),
        ("temp ASIAY34FZKBOKMUTVV7A", "temp [SECRET]"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = [SECRET]",
        ),
        (f"key:\n{PEM}\nthat is all", "key:\n[SECRET]\nthat is all"),
        ("cut off -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "cut off [SECRET]"),
        ("token ghp_" + "a1B2" * 9 + " leaked", "token [SECRET] leaked"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv", "[SECRET]"),
        ("slack xoxb-1234567890-0987654321-AbCdEfGh", "slack [SECRET]"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.SflKxwRJSMeKKF2QT4fwpM", "jwt [SECRET]"),
        ("password=hunter2 and more", "password=[SECRET] and more"),
        ('{"api_key": "abcd1234efgh"}', '{"api_key": [SECRET]}'),
        ("db_password: s3cretpass", "db_password: [SECRET]"),
        ("CLIENT_SECRET='a long secret value'", "CLIENT_SECRET=[SECRET]"),
        ("https://bob:pw123@example.com/x", "https://[SECRET]@example.com/x"),
    ],
)
def test_redacts_secrets(text: str, expected: str) -> None:
    assert redact_secrets(text) == expected


def test_redacts_briefxai_api_keys() -> None:
    key = generate_api_key()
    assert redact_secrets(f"use {key} for the gateway") == "use [SECRET] for the gateway"


@pytest.mark.parametrize(
    "text",
    [
        "I use sk-learn for machine learning and scikit-learn for the rest.",
        "She was the bearer of bad news, and bearer instruments are risky.",
        "The password: forgotten again, so I reset it.",
        "My secret: practice every day and sleep well.",
        "Our API key rotation policy is every 90 days; tokens expire hourly.",
        "Token: 5 per request, with a limit of 100 per minute.",
        "Ask Asia and Akiapolaau about the GitHub pull request from ghost_writer.",
        "The eyJ prefix is how base64 JSON starts.",
        "Reset my password please, I can't log in to my account since Monday.",
    ],
)
def test_leaves_ordinary_text_alone(text: str) -> None:
    assert redact_secrets(text) == text
    assert redact(text) == text


def test_secrets_go_before_personal_details() -> None:
    # Without the secret pass first, the phone matcher or the URL rule would eat part of the key.
    assert redact("call (415) 555-2671 with sk-abcdefghij0123456789xyz") == "call [PHONE] with [SECRET]"
    assert redact("see https://example.com/?api_key=AKIAIOSFODNN7EXAMPLE") == "see [URL]"
    assert redact("key sk-proj-12345678901234567890123 from jane@example.com") == "key [SECRET] from [EMAIL]"


def test_redaction_is_deterministic() -> None:
    text = f"my keys: sk-proj-AbC123defGHI456jklMNO789pqr AKIAIOSFODNN7EXAMPLE\n{PEM}"
    assert redact(text) == redact(text) == "my keys: [SECRET] [SECRET]\n[SECRET]"
