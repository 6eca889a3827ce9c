"""PII redaction for short texts such as request summaries, and for the free text of log lines.

Replaced, in this order (earlier patterns win where they overlap):

- ``[EMAIL]``  e-mail addresses (``name@host.tld``).
- ``[URL]``    ``http(s)://`` and ``www.`` links.
- ``[IP]``     IPv4 addresses (four 0–255 octets) and IPv6 addresses in full or ``::`` form.
- ``[CARD]``   13–19 digits, optionally grouped by spaces or dashes, that pass the Luhn check.
- ``[IBAN]``   IBAN-shaped account numbers (two letters, two digits, 11–30 letters/digits).
- ``[SSN]``    US social security numbers written ``123-45-6789``.
- ``[PHONE]``  phone numbers found by libphonenumber's matcher (``phonenumbers``), international
  (``+44 20 7946 0958``) or national for ``default_region`` (``(415) 555-2671``); only texts with at
  least seven digits are scanned, which keeps the slow matcher off ordinary text.
- ``[NAME]``   a name introduced by "my name is", "I am called", "me llamo", "je m'appelle",
  "ich heiße", "mi chiamo" (the capitalised words that follow).
"""

from __future__ import annotations

import re

import phonenumbers

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)
IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
IPV6 = re.compile(
    r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])"
    r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?(?![\w:])"
)
CARD_CANDIDATE = re.compile(r"(?<!\d)\d(?:[ \-]?\d){12,18}(?!\d)")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
NAME_INTRO = re.compile(
    r"(?P<intro>\b(?i:my name is|my name's|i am called|i'm called|me llamo|mi nombre es|je m'appelle|"
    r"ich heiße|ich heisse|mi chiamo)\s+)"
    r"(?P<name>[A-ZÀ-ÖØ-Þ][\w'\-]+(?:\s+[A-ZÀ-ÖØ-Þ][\w'\-]+)?)"
)
DIGIT = re.compile(r"\d")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[CARD]" if luhn_valid(digits) else match.group(0)


def _name(match: re.Match[str]) -> str:
    return match.group("intro") + "[NAME]"


def redact_phones(text: str, default_region: str = "US") -> str:
    if len(DIGIT.findall(text)) < 7:
        return text
    pieces: list[str] = []
    last = 0
    for found in phonenumbers.PhoneNumberMatcher(text, default_region, leniency=phonenumbers.Leniency.VALID):
        pieces.append(text[last : found.start])
        pieces.append("[PHONE]")
        last = found.end
    pieces.append(text[last:])
    return "".join(pieces)


def redact(text: str, default_region: str = "US", *, urls: bool = True, ips: bool = True) -> str:
    """``text`` with personal details replaced by placeholders (see the module docstring); ``urls`` and
    ``ips`` false keep links and IP addresses (the log redaction keeps them: logs name service addresses)."""
    text = EMAIL.sub("[EMAIL]", text)
    if urls:
        text = URL.sub("[URL]", text)
    has_digits = DIGIT.search(text) is not None
    if has_digits:
        if ips:
            text = IPV4.sub("[IP]", text)
            if ":" in text:
                text = IPV6.sub("[IP]", text)
        text = CARD_CANDIDATE.sub(_card, text)
        text = IBAN.sub("[IBAN]", text)
        text = SSN.sub("[SSN]", text)
        text = redact_phones(text, default_region)
    return NAME_INTRO.sub(_name, text)
