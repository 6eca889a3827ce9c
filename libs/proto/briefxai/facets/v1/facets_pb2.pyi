from briefxai.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FacetType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FACET_TYPE_UNSPECIFIED: _ClassVar[FacetType]
    FACET_TYPE_TEXT: _ClassVar[FacetType]
    FACET_TYPE_NUMBER: _ClassVar[FacetType]
    FACET_TYPE_ENUM: _ClassVar[FacetType]
FACET_TYPE_UNSPECIFIED: FacetType
FACET_TYPE_TEXT: FacetType
FACET_TYPE_NUMBER: FacetType
FACET_TYPE_ENUM: FacetType

class FacetDefinition(_message.Message):
    __slots__ = ("name", "question", "type", "min", "max", "choices", "builtin")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    name: str
    question: str
    type: FacetType
    min: float
    max: float
    choices: _containers.RepeatedScalarFieldContainer[str]
    builtin: bool
    def __init__(self, name: _Optional[str] = ..., question: _Optional[str] = ..., type: _Optional[_Union[FacetType, str]] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., choices: _Optional[_Iterable[str]] = ..., builtin: _Optional[bool] = ...) -> None: ...

class ExtractFacetsRequest(_message.Message):
    __slots__ = ("conversations", "facets")
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    FACETS_FIELD_NUMBER: _ClassVar[int]
    conversations: _containers.RepeatedCompositeFieldContainer[_common_pb2.Conversation]
    facets: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, conversations: _Optional[_Iterable[_Union[_common_pb2.Conversation, _Mapping]]] = ..., facets: _Optional[_Iterable[str]] = ...) -> None: ...

class ConversationFacets(_message.Message):
    __slots__ = ("conversation_id", "values")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    values: _containers.RepeatedCompositeFieldContainer[_common_pb2.FacetValue]
    def __init__(self, conversation_id: _Optional[str] = ..., values: _Optional[_Iterable[_Union[_common_pb2.FacetValue, _Mapping]]] = ...) -> None: ...

class ExtractFacetsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ConversationFacets]
    def __init__(self, results: _Optional[_Iterable[_Union[ConversationFacets, _Mapping]]] = ...) -> None: ...

class ListFacetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFacetsResponse(_message.Message):
    __slots__ = ("facets", "providers", "max_conversations_per_request", "max_messages_per_conversation", "max_chars_per_message")
    FACETS_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONVERSATIONS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGES_PER_CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    MAX_CHARS_PER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    facets: _containers.RepeatedCompositeFieldContainer[FacetDefinition]
    providers: _containers.RepeatedScalarFieldContainer[str]
    max_conversations_per_request: int
    max_messages_per_conversation: int
    max_chars_per_message: int
    def __init__(self, facets: _Optional[_Iterable[_Union[FacetDefinition, _Mapping]]] = ..., providers: _Optional[_Iterable[str]] = ..., max_conversations_per_request: _Optional[int] = ..., max_messages_per_conversation: _Optional[int] = ..., max_chars_per_message: _Optional[int] = ...) -> None: ...
