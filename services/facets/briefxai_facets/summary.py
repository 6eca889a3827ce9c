"""Extractive request summary: the first meaningful sentence the user wrote, secrets and PII redacted.

Code fences are dropped, then each user message is split into sentences (on ``. ! ? 。 ！ ？`` followed by
space, and on line breaks). Leading greetings and fillers ("Hi there,", "Hello team -", "Hola,") are
stripped. The first sentence left with at least three words (or six CJK characters) that is not a bare
filler ("Can you help me?", "I have a question.") is the summary; failing that, the longest stripped
sentence, or else the longest user message as written ("thanks!"). Then secrets and PII are replaced by
placeholders (:mod:`briefxai_common.pii`: ``[SECRET]``, ``[EMAIL]``...), whitespace is collapsed,
and the text is cut at a word boundary to at most ``max_chars`` (default 200) characters, ending in "…"
when cut.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from briefxai_common.pii import redact

CODE_FENCE = re.compile(r"```.*?(?:```|$)", re.S)
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])|\n+")
WHITESPACE = re.compile(r"\s+")
GREETING = re.compile(
    r"^(?:(?:hi|hello|hey|hiya|howdy|greetings|good (?:morning|afternoon|evening|day)|dear \w+|hola|"
    r"buenos d[ií]as|buenas(?: tardes| noches)?|bonjour|bonsoir|salut|hallo|guten (?:tag|morgen|abend)|"
    r"ciao|ol[áa]|oi|thanks|thank you|thx|ok|okay|so|um+|well)\b"
    r"(?:\s+(?:there|team|all|everyone|folks|support|guys))?[\s,!.:;\-–—]*)+",
    re.IGNORECASE,
)
FILLER = re.compile(
    r"^(?:(?:can|could|would) you (?:please )?help(?: me)?|i need (?:some )?help|i have a (?:quick )?question|"
    r"quick question|are you there|please help(?: me)?|help(?: me)?|i have a problem|i need assistance|"
    r"hope you(?:'re| are) (?:well|doing well))(?: please)?[\s.!?]*$",
    re.IGNORECASE,
)
WORD = re.compile(r"\w+")


def _cjk_count(text: str) -> int:
    return sum(1 for ch in text if 0x3040 <= ord(ch) <= 0x9FFF or 0xAC00 <= ord(ch) <= 0xD7AF)


def _sentences(text: str) -> Iterator[str]:
    text = CODE_FENCE.sub(" ", text)
    for piece in SENTENCE_BREAK.split(text):
        cleaned = WHITESPACE.sub(" ", piece).strip()
        cleaned = GREETING.sub("", cleaned).strip()
        if cleaned:
            yield cleaned


def _meaningful(sentence: str) -> bool:
    if FILLER.match(sentence):
        return False
    return len(WORD.findall(sentence)) >= 3 or _cjk_count(sentence) >= 6


def trim(text: str, max_chars: int) -> str:
    """``text`` cut at a word boundary to at most ``max_chars`` characters, with "…" when cut."""
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    if space >= max_chars // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"


def summarize_request(user_texts: Sequence[str], max_chars: int = 200, region: str = "US") -> str:
    """One sentence saying what the user asked, PII redacted; "" when the user wrote nothing."""
    chosen = ""
    longest = ""
    for message in user_texts:
        # Only the opening of a long message is looked at: the ask comes first, and this bounds the cost.
        for sentence in _sentences(message[:4000]):
            if _meaningful(sentence):
                chosen = sentence
                break
            if len(sentence) > len(longest):
                longest = sentence
        if chosen:
            break
    text = chosen or longest or max((WHITESPACE.sub(" ", t).strip() for t in user_texts), key=len, default="")
    if not text:
        return ""
    # Redact well past the cut before trimming, so a cut never leaves half an e-mail address behind.
    text = redact(text[: max_chars * 5], region)
    text = trim(text, max_chars)
    return text[0].upper() + text[1:]
