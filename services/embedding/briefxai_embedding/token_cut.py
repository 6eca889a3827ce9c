"""Cuts texts after a number of the model's tokens (``EmbedTextsRequest.max_tokens``).

The cut is made on the text, at the end of the last token that fits (the tokenizer's character
offsets), before the text reaches the cache, the micro-batcher and the model: so everything downstream
works on plain texts, a cached vector is keyed by exactly what was embedded, and two callers asking for
the same text under the same budget share one vector. Re-tokenizing the cut text gives the same tokens
(the cut falls between words or between word pieces, which WordPiece splits the same way again).

Backends without a local tokenizer (a remote OpenAI-compatible endpoint) are cut at
``CHARS_PER_TOKEN`` characters per token, at a word boundary: an estimate, said so in the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from briefxai_common.text import truncate

if TYPE_CHECKING:
    from tokenizers import Tokenizer

CHARS_PER_TOKEN = 4  # English text averages ~4 characters per token in GPT-style and WordPiece tokenizers


class TokenCutter:
    """``cut(texts, max_tokens)`` -> (texts cut to at most ``max_tokens`` tokens, which were cut).

    ``max_tokens`` counts the model's special tokens ([CLS], [SEP]) like the model does; 0 leaves texts
    as they are (the model still truncates at its own maximum).
    """

    def __init__(self, tokenizer: Tokenizer | None = None) -> None:
        self._tokenizer = tokenizer
        self._special = len(tokenizer.encode("", add_special_tokens=True).ids) if tokenizer else 0

    @classmethod
    def from_file(cls, path: Path) -> TokenCutter:
        """A cutter with the tokenizer in ``path`` (a ``tokenizer.json``), padding and truncation off."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return cls(tokenizer)

    @property
    def exact(self) -> bool:
        """True when cuts follow the model's tokenizer; False for the characters-per-token estimate."""
        return self._tokenizer is not None

    def cut(self, texts: Sequence[str], max_tokens: int) -> tuple[list[str], list[bool]]:
        if max_tokens <= 0:
            return list(texts), [False] * len(texts)
        if self._tokenizer is None:
            cut = [truncate(text, max_tokens * CHARS_PER_TOKEN) for text in texts]
            return cut, [c != t for c, t in zip(cut, texts, strict=True)]
        room = max(1, max_tokens - self._special)
        out: list[str] = []
        flags: list[bool] = []
        for text, encoding in zip(
            texts, self._tokenizer.encode_batch(list(texts), add_special_tokens=False), strict=True
        ):
            if len(encoding.ids) <= room:
                out.append(text)
                flags.append(False)
            else:
                # One character can be several pieces ('패' is two): a cut inside one drops it whole.
                out.append(text[: min(encoding.offsets[room - 1][1], encoding.offsets[room][0])])
                flags.append(True)
        return out, flags
