"""The shared conversation contract (briefxai_common.conversations) and its protobuf adapter."""

from __future__ import annotations

import subprocess
import sys

import pytest

from briefxai.common.v1 import common_pb2
from briefxai_cli.inputs import ConversationRecord
from briefxai_common.conversations import (
    MAX_REPORTED_VIOLATIONS,
    ROLE_ALIASES,
    ROLES,
    Conversation,
    ConversationLimits,
    Message,
    Role,
    Violations,
    check_conversation_count,
    check_conversations,
    parse_role,
)
from briefxai_common.conversations_proto import (
    conversation_from_proto,
    conversation_to_proto,
    role_from_proto,
    role_to_proto,
)
from briefxai_common.errors import InvalidArgument

LIMITS = ConversationLimits(
    max_conversations=5, max_messages=3, max_message_chars=20, max_id_chars=8, max_user_id_chars=4
)


def conv(cid: str, *messages: tuple[str, str], user_id: str = "u") -> Conversation:
    return Conversation(cid, user_id, [Message(role, content) for role, content in messages])


def good(cid: str) -> Conversation:
    return conv(cid, ("user", "hello"))


def check(*conversations: Conversation, limits: ConversationLimits = LIMITS) -> list[tuple[str, str]]:
    violations = Violations()
    check_conversations(conversations, limits, violations)
    return violations.reported()


def test_roles_and_aliases() -> None:
    assert ROLES == ("user", "assistant", "system", "tool")
    assert [parse_role(r) for r in ROLES] == list(Role)
    assert parse_role("  User ") is Role.USER
    assert {alias: parse_role(alias.upper()) for alias in ROLE_ALIASES} == {
        "developer": Role.SYSTEM,
        "human": Role.USER,
        "ai": Role.ASSISTANT,
        "bot": Role.ASSISTANT,
    }
    assert parse_role("robot") is None
    assert parse_role("") is None


def test_a_valid_conversation_passes() -> None:
    assert check(good("a"), conv("b", ("system", "s"), ("user", "q"), ("tool", "t"))) == []


@pytest.mark.parametrize(
    ("conversation", "field", "fragment"),
    [
        (conv("", ("user", "x")), "conversations[0].id", "must be non-empty"),
        (conv("   ", ("user", "x")), "conversations[0].id", "must be non-empty"),
        (conv("123456789", ("user", "x")), "conversations[0].id", "at most 8 characters"),
        (conv("a", ("user", "x"), user_id="u" * 5), "conversations[0].user_id", "at most 4 characters"),
        (conv("a\x00b", ("user", "x")), "conversations[0].id", "must not contain NUL"),
        (conv("a", ("user", "x"), user_id="u\x00"), "conversations[0].user_id", "must not contain NUL"),
        (conv("a"), "conversations[0].messages", "at least one message is required"),
        (conv("a", *[("user", "x")] * 4), "conversations[0].messages", "at most 3 messages"),
        (conv("a", ("", "x")), "conversations[0].messages[0].role", "must be set"),
        (conv("a", ("robot", "x")), "conversations[0].messages[0].role", "user, assistant, system or tool"),
        (conv("a", ("user", "")), "conversations[0].messages[0].content", "must be non-empty"),
        (conv("a", ("user", " \n\t")), "conversations[0].messages[0].content", "must be non-empty"),
        (conv("a", ("user", "x" * 21)), "conversations[0].messages[0].content", "at most 20 characters"),
    ],
)
def test_each_rule(conversation: Conversation, field: str, fragment: str) -> None:
    [(found_field, description)] = check(conversation)
    assert found_field == field
    assert fragment in description


def test_duplicate_ids_within_a_call() -> None:
    assert check(good("a"), good("b"), good("a")) == [
        ("conversations[2].id", "duplicate conversation id 'a'")
    ]


def test_offset_and_seen_ids_carry_across_calls() -> None:
    seen: set[str] = set()
    first = Violations()
    check_conversations([good("a"), good("b")], LIMITS, first, offset=0, seen_ids=seen)
    assert not first and seen == {"a", "b"}
    second = Violations()
    check_conversations([good("c"), good("a"), good("")], LIMITS, second, offset=2, seen_ids=seen)
    assert [field for field, _ in second.items] == ["conversations[3].id", "conversations[4].id"]
    assert seen == {"a", "b", "c"}


def test_reports_are_capped_and_the_last_item_counts_the_rest() -> None:
    violations = Violations()
    check_conversations([conv("", ("", "")) for _ in range(10)], LIMITS, violations)
    # Three violations per conversation: id, role and content.
    reported = violations.reported()
    assert len(reported) == MAX_REPORTED_VIOLATIONS + 1 == 21
    assert reported[-1] == ("", "... and 10 more violations not listed")
    with pytest.raises(InvalidArgument) as info:
        violations.raise_if_any()
    assert [(v.field, v.description) for v in info.value.violations] == reported


def test_nothing_to_raise_without_violations() -> None:
    violations = Violations()
    assert not violations and violations.reported() == []
    violations.raise_if_any()


def test_conversation_count() -> None:
    def count(n: int, minimum: int) -> list[tuple[str, str]]:
        violations = Violations()
        check_conversation_count(n, LIMITS, violations, "conversations", minimum)
        return violations.items

    assert count(0, 1) == [("conversations", "at least one conversation is required (got 0)")]
    assert count(1, 2) == [("conversations", "at least 2 conversations are required (got 1)")]
    assert count(6, 2) == [("conversations", "at most 5 conversations (got 6)")]
    assert count(2, 2) == count(5, 1) == []


def test_records_are_checked_and_converted_like_conversations() -> None:
    """The CLI's record (tuple messages, a line number) satisfies ConversationLike."""
    record = ConversationRecord("r", "u", (Message("user", "hi"), Message(Role.TOOL, "42")), {"k": "v"}, 3)
    violations = Violations()
    check_conversations([record], LIMITS, violations)
    assert not violations
    message = conversation_to_proto(record)
    assert [m.role for m in message.messages] == [common_pb2.ROLE_USER, common_pb2.ROLE_TOOL]


def test_proto_round_trip() -> None:
    conversation = Conversation(
        "c1",
        "u1",
        [Message(role, f"text {role}") for role in ROLES],
        {"label": "x"},
    )
    message = conversation_to_proto(conversation)
    assert [m.role for m in message.messages] == [
        common_pb2.ROLE_USER,
        common_pb2.ROLE_ASSISTANT,
        common_pb2.ROLE_SYSTEM,
        common_pb2.ROLE_TOOL,
    ]
    assert conversation_from_proto(message) == conversation
    assert (
        conversation_from_proto(common_pb2.Conversation.FromString(message.SerializeToString()))
        == conversation
    )


def test_unspecified_or_unknown_proto_roles_become_empty_and_are_reported() -> None:
    message = common_pb2.Conversation(
        id="c",
        messages=[
            common_pb2.Message(role=common_pb2.ROLE_UNSPECIFIED, content="x"),
            common_pb2.Message(role=99, content="y"),  # type: ignore[arg-type]  # a newer client's role
        ],
    )
    conversation = conversation_from_proto(message)
    assert [m.role for m in conversation.messages] == ["", ""]
    assert [field for field, _ in check(conversation)] == [
        "conversations[0].messages[0].role",
        "conversations[0].messages[1].role",
    ]
    assert role_from_proto(common_pb2.ROLE_UNSPECIFIED) == ""
    assert role_to_proto("") == role_to_proto("robot") == common_pb2.ROLE_UNSPECIFIED


def test_the_contract_module_imports_no_grpc_or_generated_code() -> None:
    code = (
        "import sys, briefxai_common.conversations; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('grpc', 'google', 'briefxai')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
