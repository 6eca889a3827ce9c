"""Flags clusters whose conversations are mostly not in English, by language, in their names.

The default embedding model (all-MiniLM-L6-v2) is English-only: it maps text of other languages by
surface form, so conversations in Portuguese, Spanish or French end up together by language rather than
by topic, and their names read as fragments of that language. The ``language`` facet (what the
user wrote, ISO 639-1) tells the analyst what such a cluster is: a cluster in which at least
``NON_ENGLISH_SHARE`` of the conversations with a known language are not English gets its language in
front of its name ("Portuguese: ...", or "Mixed languages (es, pt): ..." when no one language holds
that share). A multilingual embedding model (an OpenAI-compatible endpoint) clusters by topic across
languages instead; the flag then names the language of clusters that are still mostly one language.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .models import ClusterNode, FacetDistribution

LANGUAGE_FACET = "language"
UNDETERMINED = "und"
ENGLISH = "en"
NON_ENGLISH_SHARE = 0.5
MIXED_CODES_SHOWN = 3
# English names of the facets service's default languages (a table of 20 beats a dependency); any other
# code is shown as the code itself.
LANGUAGE_NAMES: Mapping[str, str] = {
    "en": "English", "es": "Spanish", "fr": "French", "de": "German", "it": "Italian",
    "pt": "Portuguese", "nl": "Dutch", "sv": "Swedish", "pl": "Polish", "ru": "Russian",
    "uk": "Ukrainian", "tr": "Turkish", "ar": "Arabic", "hi": "Hindi", "ja": "Japanese",
    "zh": "Chinese", "ko": "Korean", "vi": "Vietnamese", "id": "Indonesian", "fa": "Persian",
}  # fmt: skip


def language_label(counts: Mapping[str, int]) -> str:
    """ "" for a mostly English (or undetermined) cluster; else the language's name, or "Mixed
    languages (codes)" when the non-English share is split between languages."""
    known = {code: n for code, n in counts.items() if code != UNDETERMINED and n > 0}
    total = sum(known.values())
    if total == 0:
        return ""
    other = {code: n for code, n in known.items() if code != ENGLISH}
    if sum(other.values()) < NON_ENGLISH_SHARE * total:
        return ""
    ranked = sorted(other, key=lambda code: (-other[code], code))
    top = ranked[0]
    if other[top] >= NON_ENGLISH_SHARE * total:
        return LANGUAGE_NAMES.get(top, top)
    return f"Mixed languages ({', '.join(sorted(ranked[:MIXED_CODES_SHOWN]))})"


def flag_languages(
    clusters: Sequence[ClusterNode], distributions: Mapping[str, Sequence[FacetDistribution]]
) -> int:
    """Prefixes the name of each mostly non-English cluster with its language; returns how many."""
    flagged = 0
    for cluster in clusters:
        counts = next((d.counts for d in distributions.get(cluster.id, ()) if d.facet == LANGUAGE_FACET), {})
        label = language_label(counts)
        if label and not cluster.name.startswith(f"{label}: "):
            cluster.name = f"{label}: {cluster.name}"
            flagged += 1
    return flagged
