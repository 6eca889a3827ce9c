from briefxai.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbedTextsRequest(_message.Message):
    __slots__ = ("texts", "max_tokens", "model")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    max_tokens: int
    model: str
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., max_tokens: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class EmbedTextsResponse(_message.Message):
    __slots__ = ("vectors", "token_counts", "truncated", "model")
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COUNTS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    vectors: _common_pb2.PackedVectors
    token_counts: _containers.RepeatedScalarFieldContainer[int]
    truncated: _containers.RepeatedScalarFieldContainer[bool]
    model: str
    def __init__(self, vectors: _Optional[_Union[_common_pb2.PackedVectors, _Mapping]] = ..., token_counts: _Optional[_Iterable[int]] = ..., truncated: _Optional[_Iterable[bool]] = ..., model: _Optional[str] = ...) -> None: ...

class StreamEmbedTextsRequest(_message.Message):
    __slots__ = ("texts", "max_tokens")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    max_tokens: int
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., max_tokens: _Optional[int] = ...) -> None: ...

class StreamEmbedTextsResponse(_message.Message):
    __slots__ = ("offset", "vectors", "token_counts", "truncated")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COUNTS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    offset: int
    vectors: _common_pb2.PackedVectors
    token_counts: _containers.RepeatedScalarFieldContainer[int]
    truncated: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, offset: _Optional[int] = ..., vectors: _Optional[_Union[_common_pb2.PackedVectors, _Mapping]] = ..., token_counts: _Optional[_Iterable[int]] = ..., truncated: _Optional[_Iterable[bool]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("model", "backend", "dim", "max_tokens", "normalized", "max_texts_per_request", "max_chars_per_text")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXTS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_CHARS_PER_TEXT_FIELD_NUMBER: _ClassVar[int]
    model: str
    backend: str
    dim: int
    max_tokens: int
    normalized: bool
    max_texts_per_request: int
    max_chars_per_text: int
    def __init__(self, model: _Optional[str] = ..., backend: _Optional[str] = ..., dim: _Optional[int] = ..., max_tokens: _Optional[int] = ..., normalized: _Optional[bool] = ..., max_texts_per_request: _Optional[int] = ..., max_chars_per_text: _Optional[int] = ...) -> None: ...

class ClearCacheRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClearCacheResponse(_message.Message):
    __slots__ = ("cleared_entries",)
    CLEARED_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    cleared_entries: int
    def __init__(self, cleared_entries: _Optional[int] = ...) -> None: ...
