"""Plain text helpers shared by the services."""

from __future__ import annotations

# A cut may step back to the last space if that loses no more than this share of the limit.
WORD_BOUNDARY_SLACK = 0.2


def truncate(text: str, budget: int) -> str:
    """Cuts ``text`` to at most ``budget`` characters, at a word boundary when one is close."""
    if budget <= 0:
        return ""
    if len(text) <= budget:
        return text
    cut = text[:budget]
    space = cut.rfind(" ")
    if space >= budget * (1 - WORD_BOUNDARY_SLACK):
        cut = cut[:space]
    return cut.rstrip()
