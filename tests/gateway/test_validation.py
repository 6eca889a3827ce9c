"""Validation of conversations and options (briefxai_gateway.validation)."""

from __future__ import annotations

import pytest

from briefxai_common.errors import InvalidArgument
from briefxai_gateway.downstream import ClusteringLimits
from briefxai_gateway.models import AnalysisOptions, Conversation, EmbedTextMode, Message, RequestedOptions
from briefxai_gateway.settings import AnalysisDefaults
from briefxai_gateway.validation import (
    MAX_REPORTED_VIOLATIONS,
    Limits,
    Violations,
    check_conversations,
    facets_to_extract,
    resolve_options,
    validate_conversations,
)

LIMITS = Limits(max_conversations=5, max_messages=3, max_message_chars=20, max_id_chars=8)
CLUSTERING = ClusteringLimits(max_k=50, max_hierarchy_depth=3, max_vectors=1000)


def good(cid: str) -> Conversation:
    return Conversation(cid, "u", [Message("user", "hello")])


def violations_of(error: InvalidArgument) -> dict[str, str]:
    return {v.field: v.description for v in error.violations}


def test_valid_conversations_pass() -> None:
    validate_conversations([good("a"), good("b")], LIMITS)


def test_every_bad_field_is_reported_with_its_path() -> None:
    conversations = [
        good("a"),
        Conversation("", "u", [Message("user", "x")]),
        good("a"),
        Conversation("c", "u", []),
        Conversation("d", "u", [Message("", "x"), Message("user", "   "), Message("assistant", "y" * 21)]),
    ]
    with pytest.raises(InvalidArgument) as info:
        validate_conversations(conversations, LIMITS)
    found = violations_of(info.value)
    assert set(found) == {
        "conversations[1].id",
        "conversations[2].id",
        "conversations[3].messages",
        "conversations[4].messages[0].role",
        "conversations[4].messages[1].content",
        "conversations[4].messages[2].content",
    }
    assert "duplicate" in found["conversations[2].id"]


def test_limits_on_count_ids_and_messages() -> None:
    for too_few in ([], [good("only")]):
        with pytest.raises(InvalidArgument) as info:
            validate_conversations(too_few, LIMITS)
        assert "at least 2" in violations_of(info.value)["conversations"]
    with pytest.raises(InvalidArgument) as info:
        validate_conversations([good(str(i)) for i in range(6)], LIMITS)
    assert "at most 5" in violations_of(info.value)["conversations"]
    with pytest.raises(InvalidArgument) as info:
        validate_conversations(
            [good("way-too-long-id"), Conversation("m", "", [Message("user", "a")] * 4)], LIMITS
        )
    assert set(violations_of(info.value)) == {"conversations[0].id", "conversations[1].messages"}


def test_ids_are_tracked_across_stream_batches() -> None:
    seen: set[str] = set()
    first = Violations()
    check_conversations([good("a"), good("b")], LIMITS, first, offset=0, seen_ids=seen)
    assert not first
    second = Violations()
    check_conversations([good("c"), good("a")], LIMITS, second, offset=2, seen_ids=seen)
    assert [field for field, _ in second.items] == ["conversations[3].id"]


def test_reported_violations_are_capped() -> None:
    many = [Conversation("", "", []) for _ in range(50)]
    with pytest.raises(InvalidArgument) as info:
        validate_conversations(many, Limits(max_conversations=100))
    assert len(info.value.violations) == MAX_REPORTED_VIOLATIONS + 1
    assert "more violations" in info.value.violations[-1].description


def resolve(
    options: RequestedOptions,
    known: list[str] | None = None,
    clustering: ClusteringLimits | None = CLUSTERING,
) -> AnalysisOptions:
    violations = Violations()
    resolved = resolve_options(
        options,
        defaults=AnalysisDefaults.model_validate({"k": 7, "seed": 42, "embed_text": "first_user_message"}),
        clustering_limits=clustering,
        known_facets=known,
        violations=violations,
    )
    violations.raise_if_any()
    return resolved


def test_defaults_fill_the_unset_options() -> None:
    resolved = resolve(RequestedOptions(display_name="x"))
    assert (resolved.k, resolved.seed, resolved.embed_text) == (7, 42, EmbedTextMode.FIRST_USER_MESSAGE)
    assert resolved.hierarchy_depth is None and resolved.min_cluster_size is None  # the clustering defaults
    explicit = resolve(RequestedOptions(k=3, seed=1, embed_text=EmbedTextMode.CONVERSATION))
    assert (explicit.k, explicit.seed, explicit.embed_text) == (3, 1, EmbedTextMode.CONVERSATION)


def test_set_zeros_are_values_not_defaults() -> None:
    resolved = resolve(RequestedOptions(seed=0, hierarchy_depth=0))
    assert (resolved.seed, resolved.hierarchy_depth) == (0, 0)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (RequestedOptions(k=1), "options.k"),
        (RequestedOptions(min_cluster_size=0), "options.min_cluster_size"),
        (RequestedOptions(min_distinct_users=0), "options.min_distinct_users"),
        (RequestedOptions(embed_token_budget=0), "options.embed_token_budget"),
        (RequestedOptions(embed_token_budget=8193), "options.embed_token_budget"),
        (RequestedOptions(embed_text_known=False), "options.embed_text"),
    ],
)
def test_set_options_out_of_range_are_field_violations(options: RequestedOptions, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        resolve(options)
    assert list(violations_of(info.value)) == [field]


def test_clustering_limits_are_checked_only_when_the_service_could_be_asked() -> None:
    assert resolve(RequestedOptions(k=51, hierarchy_depth=4), clustering=None).k == 51
    with pytest.raises(InvalidArgument) as info:
        resolve(RequestedOptions(k=51, hierarchy_depth=4))
    found = violations_of(info.value)
    assert "max_k" in found["options.k"] and "50" in found["options.k"]
    assert "3" in found["options.hierarchy_depth"]


def test_bad_options_are_field_violations() -> None:
    with pytest.raises(InvalidArgument) as info:
        resolve(
            RequestedOptions(k=51, hierarchy_depth=4, facets=["task", "nope", "task"]),
            known=["task", "request"],
        )
    found = violations_of(info.value)
    assert set(found) == {"options.k", "options.hierarchy_depth", "options.facets[1]", "options.facets[2]"}
    assert "unknown facet 'nope'" in found["options.facets[1]"]


def test_facet_names_unchecked_when_the_facets_service_is_unreachable() -> None:
    assert resolve(RequestedOptions(facets=["anything"]), known=None).facets == ["anything"]


def test_request_summary_needs_the_request_facet() -> None:
    options = AnalysisOptions(facets=["task"], embed_text=EmbedTextMode.REQUEST_SUMMARY)
    assert facets_to_extract(options) == ["task", "request"]
    assert facets_to_extract(AnalysisOptions()) == []
