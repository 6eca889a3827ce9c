"""The one conversation contract shared by the gateway, the facets service and the CLI.

It holds the role table (with the accepted aliases), the plain ``Message``/``Conversation`` types and
the checks every entry point applies. Each problem becomes a field violation with a path such as
``conversations[3].messages[0].role``. At most ``MAX_REPORTED_VIOLATIONS`` are listed (the last item
says how many more there were) so that the error fits in gRPC trailing metadata.

Plain Python: no gRPC, no generated code (``conversations_proto`` maps these types to protobuf).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .errors import InvalidArgument

MAX_REPORTED_VIOLATIONS = 20


class Role(enum.StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL = "tool"


ROLES: tuple[Role, ...] = tuple(Role)
#: Other spellings readers accept for a role (OpenAI's ``developer``, chat exports' ``human``/``ai``/``bot``).
ROLE_ALIASES: Mapping[str, Role] = {
    "developer": Role.SYSTEM,
    "human": Role.USER,
    "ai": Role.ASSISTANT,
    "bot": Role.ASSISTANT,
}
_ROLE_BY_NAME: Mapping[str, Role] = {**{role.value: role for role in Role}, **ROLE_ALIASES}
ROLE_NAMES = ", ".join(ROLES)


def parse_role(text: str) -> Role | None:
    """The role ``text`` names (case and surrounding space ignored, aliases accepted), or None."""
    return _ROLE_BY_NAME.get(text.strip().lower())


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # a Role value; "" when unset, which the check reports
    content: str


@dataclass(slots=True)
class Conversation:
    id: str
    user_id: str
    messages: list[Message]
    metadata: dict[str, str] = field(default_factory=dict)

    def user_texts(self) -> list[str]:
        return [m.content for m in self.messages if m.role == Role.USER]


class ConversationLike(Protocol):
    """What the check and the protobuf adapter read: a :class:`Conversation` or a reader's record."""

    @property
    def id(self) -> str: ...

    @property
    def user_id(self) -> str: ...

    @property
    def messages(self) -> Sequence[Message]: ...

    @property
    def metadata(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class ConversationLimits:
    """Defaults are the gateway's."""

    max_conversations: int = 200_000
    max_messages: int = 1000
    max_message_chars: int = 100_000
    max_id_chars: int = 256
    max_user_id_chars: int = 256


class Violations:
    """Collects (field, description) pairs; counts the ones beyond the reporting cap."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self.dropped = 0

    def add(self, field: str, description: str) -> None:
        if len(self.items) < MAX_REPORTED_VIOLATIONS:
            self.items.append((field, description))
        else:
            self.dropped += 1

    def __bool__(self) -> bool:
        return bool(self.items)

    def reported(self) -> list[tuple[str, str]]:
        """The listed violations, plus one item saying how many more were not listed."""
        items = list(self.items)
        if self.dropped:
            items.append(("", f"... and {self.dropped} more violations not listed"))
        return items

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument.many(self.reported())


#: Identifiers are stored as text columns, and PostgreSQL's text cannot hold U+0000.
NUL = "\x00"
NUL_MESSAGE = "must not contain NUL (U+0000) characters"


def check_conversations(
    conversations: Sequence[ConversationLike],
    limits: ConversationLimits,
    violations: Violations,
    *,
    offset: int = 0,
    seen_ids: set[str] | None = None,
) -> None:
    """Checks one run of conversations whose first has index ``offset`` in the whole request.

    ``seen_ids`` carries ids across calls (client streaming); ids are added to it.
    """
    seen = seen_ids if seen_ids is not None else set()
    for index, conversation in enumerate(conversations, start=offset):
        path = f"conversations[{index}]"
        cid = conversation.id
        if not cid or not cid.strip():
            violations.add(f"{path}.id", "must be non-empty")
        elif len(cid) > limits.max_id_chars:
            violations.add(f"{path}.id", f"must be at most {limits.max_id_chars} characters")
        elif NUL in cid:
            violations.add(f"{path}.id", NUL_MESSAGE)
        elif cid in seen:
            violations.add(f"{path}.id", f"duplicate conversation id {cid[:64]!r}")
        else:
            seen.add(cid)
        if len(conversation.user_id) > limits.max_user_id_chars:
            violations.add(f"{path}.user_id", f"must be at most {limits.max_user_id_chars} characters")
        elif NUL in conversation.user_id:
            violations.add(f"{path}.user_id", NUL_MESSAGE)
        messages = conversation.messages
        if not messages:
            violations.add(f"{path}.messages", "at least one message is required")
            continue
        if len(messages) > limits.max_messages:
            violations.add(f"{path}.messages", f"at most {limits.max_messages} messages per conversation")
            continue
        for m_index, message in enumerate(messages):
            m_path = f"{path}.messages[{m_index}]"
            if message.role not in ROLES:
                violations.add(f"{m_path}.role", f"must be set ({', '.join(ROLES[:-1])} or {ROLES[-1]})")
            if not message.content or not message.content.strip():
                violations.add(f"{m_path}.content", "must be non-empty")
            elif len(message.content) > limits.max_message_chars:
                violations.add(f"{m_path}.content", f"must be at most {limits.max_message_chars} characters")


def check_conversation_count(
    count: int, limits: ConversationLimits, violations: Violations, field: str, minimum: int
) -> None:
    if count < minimum:
        needed = "one conversation is" if minimum == 1 else f"{minimum} conversations are"
        violations.add(field, f"at least {needed} required (got {count})")
    elif count > limits.max_conversations:
        violations.add(field, f"at most {limits.max_conversations} conversations (got {count})")
