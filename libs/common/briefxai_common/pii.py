"""PII and secret redaction for short texts such as request summaries, and for the free text of log lines.

Secrets go first (:func:`redact_secrets`, also usable alone), each replaced by ``[SECRET]``, so that
the URL, phone and card rules below never eat part of a key and leave the rest:

- PEM private-key blocks, ``-----BEGIN ... PRIVATE KEY-----`` to the matching ``-----END ...-----``
  across lines (or to the end of the text when the block is cut off);
- credentials in URLs (``https://user:pass@host``: the ``user:pass`` part);
- OpenAI-style keys ``sk-...`` (``sk-proj-...`` included: 20+ characters with a digit among them);
- ``Authorization: Bearer|Basic|Token <credential>`` and ``Bearer <token>`` (a token with a digit);
- AWS access key ids (``AKIA``/``ASIA`` and 16 capitals or digits) and ``aws_secret_access_key = <40>``;
- GitHub tokens (``ghp_``, ``gho_``, ``ghu_``, ``ghs_``, ``ghr_``, ``github_pat_``), Slack tokens
  (``xoxb-``, ``xoxa-``, ``xoxp-``, ``xoxr-``, ``xoxs-``), JWTs (``eyJ...``.``eyJ...``.``...``), and our own
  API keys (``bxk_<12 hex>_<43 characters>``, :mod:`briefxai_common.apikeys`);
- the value of ``password``/``passwd``/``pwd``/``api_key``/``secret``/``token``/``client_secret``...
  assignments: after ``=`` any value of 4+ characters, after ``:`` a quoted value or one of 6+
  characters holding a digit, so that prose ("the password: forgotten") is left alone. The key stays:
  ``password=[SECRET]``.

Each costly pattern runs only when a cheap substring test says it could match, so ordinary text pays a
few ``in`` checks. Hand-written rather than ``detect-secrets``: that tool scans line by line through
some twenty plugins and reports values, not spans, which is too slow for every log line and cannot
cover a multi-line key block.

Then personal details, in this order (earlier patterns win where they overlap):

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

CREDENTIAL_MARK = "[SECRET]"
PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.S,
)
URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)")
OPENAI_KEY = re.compile(r"(?<![A-Za-z0-9_\-])sk-(?=[A-Za-z0-9_\-]*\d)[A-Za-z0-9_\-]{20,}")
AUTHORIZATION = re.compile(r"(?i:\bauthorization)\s*[:=]\s*(?i:bearer|basic|token)\s+[A-Za-z0-9._~+/\-]+=*")
BEARER = re.compile(r"(?i:\bbearer)\s+(?=[A-Za-z0-9._~+/\-]*\d)[A-Za-z0-9._~+/\-]{16,}=*")
AWS_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
AWS_SECRET_ASSIGNMENT = re.compile(
    r"(?i:\baws_?secret_?access_?key)(\s*[=:]\s*)([\"']?)[A-Za-z0-9/+=]{40}\2(?![A-Za-z0-9/+=])"
)
GITHUB_TOKEN = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})")
SLACK_TOKEN = re.compile(r"\bxox[baprs]-[A-Za-z0-9\-]{10,}")
JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*")
BRIEFXAI_KEY = re.compile(r"\bbxk_[0-9a-f]{12}_[A-Za-z0-9_\-]{43}(?![A-Za-z0-9_\-])")
_CREDENTIAL_NAME = (
    r"(?i:\b(?P<key>(?:[a-z0-9]+_)*(?:password|passwd|pwd|api_?key|apikey|api-key|secret|secret_?key|"
    r"client_?secret|access_?token|auth_?token|refresh_?token|token))[\"']?)"
)
_QUOTED = r"\"[^\"\n]{4,}\"|'[^'\n]{4,}'"
_NOT_PLACEHOLDER = r"(?!\[[A-Z]+\])"  # a value already redacted ("[REDACTED]", "[SECRET]") stays
_BARE = r"[^\s\"',;&)]"
# ``key = value``: any value of 4+ characters; ``key: value``: quoted, or 6+ characters with a digit.
SECRET_ASSIGNMENT = re.compile(
    _CREDENTIAL_NAME + rf"(?P<sep>\s*=\s*){_NOT_PLACEHOLDER}(?:{_QUOTED}|{_BARE}{{4,}})"
)
SECRET_COLON_ASSIGNMENT = re.compile(
    _CREDENTIAL_NAME + rf"(?P<sep>\s*:\s*){_NOT_PLACEHOLDER}(?:{_QUOTED}|(?={_BARE}{{6,}}){_BARE}*\d{_BARE}*)"
)
ASSIGNMENT_HINTS = ("pass", "pwd", "key", "secret", "token")


def _keep_key(match: re.Match[str]) -> str:
    return f"{match.group(0)[: match.start('sep') - match.start(0)]}{match.group('sep')}{CREDENTIAL_MARK}"


def _keep_aws_key(match: re.Match[str]) -> str:
    return f"{match.group(0)[: match.start(1) - match.start(0)]}{match.group(1)}{CREDENTIAL_MARK}"


def redact_secrets(text: str) -> str:
    """``text`` with credentials (keys, tokens, passwords, private keys) replaced by ``[SECRET]``."""
    if "PRIVATE KEY" in text:
        text = PRIVATE_KEY_BLOCK.sub(CREDENTIAL_MARK, text)
    if "://" in text and "@" in text:
        text = URL_CREDENTIALS.sub(CREDENTIAL_MARK, text)
    if "sk-" in text:
        text = OPENAI_KEY.sub(CREDENTIAL_MARK, text)
    lowered = text.lower()
    if "bearer" in lowered or "authorization" in lowered:
        text = AUTHORIZATION.sub(CREDENTIAL_MARK, text)
        text = BEARER.sub(CREDENTIAL_MARK, text)
    if "AKIA" in text or "ASIA" in text:
        text = AWS_ACCESS_KEY_ID.sub(CREDENTIAL_MARK, text)
    if "gh" in text or "github_pat_" in text:
        text = GITHUB_TOKEN.sub(CREDENTIAL_MARK, text)
    if "xox" in text:
        text = SLACK_TOKEN.sub(CREDENTIAL_MARK, text)
    if "eyJ" in text:
        text = JWT.sub(CREDENTIAL_MARK, text)
    if "bxk_" in text:
        text = BRIEFXAI_KEY.sub(CREDENTIAL_MARK, text)
    if ("=" in text or ":" in text) and any(hint in lowered for hint in ASSIGNMENT_HINTS):
        if "secret" in lowered:
            text = AWS_SECRET_ASSIGNMENT.sub(_keep_aws_key, text)
        text = SECRET_ASSIGNMENT.sub(_keep_key, text)
        text = SECRET_COLON_ASSIGNMENT.sub(_keep_key, text)
    return text


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
    text = redact_secrets(text)
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
