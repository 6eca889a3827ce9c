"""Protobuf adapter of the conversation contract: ``briefxai.common.v1`` messages <-> ``conversations``."""

from __future__ import annotations

from briefxai.common.v1 import common_pb2

from .conversations import Conversation, ConversationLike, Message, Role

ROLE_TO_PROTO: dict[str, common_pb2.Role] = {
    Role.USER: common_pb2.ROLE_USER,
    Role.ASSISTANT: common_pb2.ROLE_ASSISTANT,
    Role.SYSTEM: common_pb2.ROLE_SYSTEM,
    Role.TOOL: common_pb2.ROLE_TOOL,
}
ROLE_FROM_PROTO: dict[int, Role] = {value: Role(role) for role, value in ROLE_TO_PROTO.items()}


def role_from_proto(value: int) -> str:
    """Unspecified or unknown roles become "" so that the check reports them."""
    return ROLE_FROM_PROTO.get(value, "")


def role_to_proto(role: str) -> common_pb2.Role:
    """ROLE_UNSPECIFIED for anything but a Role value (the receiver reports it)."""
    return ROLE_TO_PROTO.get(role, common_pb2.ROLE_UNSPECIFIED)


def conversation_from_proto(message: common_pb2.Conversation) -> Conversation:
    return Conversation(
        id=message.id,
        user_id=message.user_id,
        messages=[Message(role_from_proto(m.role), m.content) for m in message.messages],
        metadata=dict(message.metadata),
    )


def conversation_to_proto(conversation: ConversationLike) -> common_pb2.Conversation:
    return common_pb2.Conversation(
        id=conversation.id,
        user_id=conversation.user_id,
        messages=[
            common_pb2.Message(role=role_to_proto(m.role), content=m.content) for m in conversation.messages
        ],
        metadata=dict(conversation.metadata),
    )
