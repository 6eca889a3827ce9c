"""Request limits: which batches are rejected, and with which field paths."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from briefxai_common.errors import InvalidArgument
from briefxai_embedding.embedder import MAX_REPORTED_VIOLATIONS, Limits, validate_texts

LIMITS = Limits(max_texts_per_request=5, max_chars_per_text=10)


@given(st.lists(st.text(max_size=20), max_size=8))
def test_rejected_exactly_when_a_limit_is_broken(texts: list[str]) -> None:
    broken = not texts or len(texts) > 5 or any(len(t) > 10 for t in texts)
    if not broken:
        validate_texts(texts, LIMITS)
        return
    with pytest.raises(InvalidArgument) as caught:
        validate_texts(texts, LIMITS)
    fields = [v.field for v in caught.value.violations]
    if not texts or len(texts) > 5:
        assert fields == ["texts"]
    else:
        assert fields == [f"texts[{i}]" for i, t in enumerate(texts) if len(t) > 10]


def test_empty_strings_are_allowed() -> None:
    validate_texts(["", "", ""], LIMITS)


def test_too_long_texts_are_listed_up_to_a_bound() -> None:
    limits = Limits(max_texts_per_request=100, max_chars_per_text=1)
    with pytest.raises(InvalidArgument) as caught:
        validate_texts(["long"] * 30, limits)
    assert len(caught.value.violations) == MAX_REPORTED_VIOLATIONS
    assert caught.value.violations[0].field == "texts[0]"


def test_where_prefixes_the_description() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_texts([], LIMITS, where="stream chunk 2 (offset 10)")
    assert (
        caught.value.violations[0].description == "stream chunk 2 (offset 10): at least one text is required"
    )
