"""Language of what the user wrote, as an ISO 639-1 code, with ``lingua-language-detector``.

The detector is built once per process, restricted to :data:`DEFAULT_LANGUAGES` (configurable), in
lingua's low-accuracy mode (trigram models only) with its models preloaded: building takes ~0.3 s and
detection of a ~150-character text ~0.2 ms. High-accuracy mode is more reliable on very short texts
but takes ~6 s and far more memory to build. Only the first ``max_chars`` (160) characters of the
user's messages are looked at, the first message first (cost grows with length; the opening says enough). Texts with too few letters
to tell (fewer than ``min_letters`` letters, or fewer than two CJK characters) are ``und``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

UNDETERMINED = "und"

DEFAULT_LANGUAGES: tuple[str, ...] = (
    "en", "es", "fr", "de", "it", "pt", "nl", "sv", "pl", "ru",
    "uk", "tr", "ar", "hi", "ja", "zh", "ko", "vi", "id", "fa",
)  # fmt: skip

#: Every ISO 639-1 code (for validating what an LLM answers), plus ``und``.
ISO_639_1: frozenset[str] = frozenset(
    [
        "aa",
        "ab",
        "ae",
        "af",
        "ak",
        "am",
        "an",
        "ar",
        "as",
        "av",
        "ay",
        "az",
        "ba",
        "be",
        "bg",
        "bi",
        "bm",
        "bn",
        "bo",
        "br",
        "bs",
        "ca",
        "ce",
        "ch",
        "co",
        "cr",
        "cs",
        "cu",
        "cv",
        "cy",
        "da",
        "de",
        "dv",
        "dz",
        "ee",
        "el",
        "en",
        "eo",
        "es",
        "et",
        "eu",
        "fa",
        "ff",
        "fi",
        "fj",
        "fo",
        "fr",
        "fy",
        "ga",
        "gd",
        "gl",
        "gn",
        "gu",
        "gv",
        "ha",
        "he",
        "hi",
        "ho",
        "hr",
        "ht",
        "hu",
        "hy",
        "hz",
        "ia",
        "id",
        "ie",
        "ig",
        "ii",
        "ik",
        "io",
        "is",
        "it",
        "iu",
        "ja",
        "jv",
        "ka",
        "kg",
        "ki",
        "kj",
        "kk",
        "kl",
        "km",
        "kn",
        "ko",
        "kr",
        "ks",
        "ku",
        "kv",
        "kw",
        "ky",
        "la",
        "lb",
        "lg",
        "li",
        "ln",
        "lo",
        "lt",
        "lu",
        "lv",
        "mg",
        "mh",
        "mi",
        "mk",
        "ml",
        "mn",
        "mr",
        "ms",
        "mt",
        "my",
        "na",
        "nb",
        "nd",
        "ne",
        "ng",
        "nl",
        "nn",
        "no",
        "nr",
        "nv",
        "ny",
        "oc",
        "oj",
        "om",
        "or",
        "os",
        "pa",
        "pi",
        "pl",
        "ps",
        "pt",
        "qu",
        "rm",
        "rn",
        "ro",
        "ru",
        "rw",
        "sa",
        "sc",
        "sd",
        "se",
        "sg",
        "si",
        "sk",
        "sl",
        "sm",
        "sn",
        "so",
        "sq",
        "sr",
        "ss",
        "st",
        "su",
        "sv",
        "sw",
        "ta",
        "te",
        "tg",
        "th",
        "ti",
        "tk",
        "tl",
        "tn",
        "to",
        "tr",
        "ts",
        "tt",
        "tw",
        "ty",
        "ug",
        "uk",
        "ur",
        "uz",
        "ve",
        "vi",
        "vo",
        "wa",
        "wo",
        "xh",
        "yi",
        "yo",
        "za",
        "zh",
        "zu",
        "und",
    ]
)


LETTER = re.compile(r"[^\W\d_]")
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def languages_from_codes(codes: Sequence[str]) -> list[Language]:
    """lingua languages for ISO 639-1 codes; raises ValueError naming an unknown code."""
    result = []
    for code in codes:
        try:
            iso = IsoCode639_1.from_str(code.lower())
        except ValueError as exc:
            raise ValueError(f"unknown or unsupported language code {code!r}") from exc
        result.append(Language.from_iso_code_639_1(iso))
    return result


class LanguageIdentifier:
    """Thread-safe once built; build one per process (see :func:`shared_identifier`)."""

    def __init__(
        self,
        codes: Sequence[str] = DEFAULT_LANGUAGES,
        high_accuracy: bool = False,
        max_chars: int = 160,
        min_letters: int = 10,
    ) -> None:
        languages = languages_from_codes(codes)
        if len(languages) < 2:
            raise ValueError("language detection needs at least two languages")
        builder = LanguageDetectorBuilder.from_languages(*languages)
        if not high_accuracy:
            builder = builder.with_low_accuracy_mode()
        self._detector: LanguageDetector = builder.with_preloaded_language_models().build()
        self.max_chars = max_chars
        self.min_letters = min_letters

    def detect(self, user_texts: Sequence[str]) -> str:
        """ISO 639-1 code of the language of the user's messages, or ``und``.

        The first message decides; later ones are appended only while the text is shorter than
        ``max_chars`` (a one-word opening such as "hi" says little).
        """
        text = ""
        for message in user_texts:
            text = f"{text}\n{message}" if text else message
            if len(text) >= self.max_chars:
                break
        text = text[: self.max_chars]
        if len(CJK.findall(text)) < 2 and len(LETTER.findall(text)) < self.min_letters:
            return UNDETERMINED
        language = self._detector.detect_language_of(text)
        if language is None:
            return UNDETERMINED
        return language.iso_code_639_1.name.lower()


@lru_cache(maxsize=4)
def shared_identifier(
    codes: tuple[str, ...] = DEFAULT_LANGUAGES, high_accuracy: bool = False
) -> LanguageIdentifier:
    """One identifier per configuration per process (building one costs 0.3–6 s)."""
    return LanguageIdentifier(codes, high_accuracy=high_accuracy)
