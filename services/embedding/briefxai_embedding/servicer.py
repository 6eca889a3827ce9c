"""gRPC adapter: protobuf <-> :class:`Embedder`. Domain errors are mapped to status codes by the bootstrap."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from briefxai.common.v1 import common_pb2
from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai_common.vectors import pack_vectors
from briefxai_embedding.backends import EmbedResult
from briefxai_embedding.embedder import Embedder

SERVICE_NAME = embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].full_name
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def packed(result: EmbedResult) -> common_pb2.PackedVectors:
    data, dim, count = pack_vectors(result.vectors)
    return common_pb2.PackedVectors(data=data, dim=dim, count=count)


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServiceServicer):
    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    async def EmbedTexts(
        self, request: embedding_pb2.EmbedTextsRequest, context: Context
    ) -> embedding_pb2.EmbedTextsResponse:
        pinned = request.model if request.HasField("model") else ""
        result = await self.embedder.embed(list(request.texts), max_tokens=request.max_tokens, model=pinned)
        return embedding_pb2.EmbedTextsResponse(
            vectors=packed(result),
            token_counts=result.token_counts,
            truncated=result.truncated,
            model=result.model or self.embedder.backend.model,
        )

    async def StreamEmbedTexts(
        self, request_iterator: AsyncIterator[embedding_pb2.StreamEmbedTextsRequest], context: Context
    ) -> AsyncIterator[embedding_pb2.StreamEmbedTextsResponse]:
        """One response per request chunk, in order; ``offset`` is the chunk's first index in the stream.

        A bad chunk ends the stream with INVALID_ARGUMENT after the answers to the chunks before it.
        """
        offset = 0
        chunk_index = 0
        async for chunk in request_iterator:
            texts = list(chunk.texts)
            result = await self.embedder.embed(
                texts, where=f"stream chunk {chunk_index} (offset {offset})", max_tokens=chunk.max_tokens
            )
            yield embedding_pb2.StreamEmbedTextsResponse(
                offset=offset,
                vectors=packed(result),
                token_counts=result.token_counts,
                truncated=result.truncated,
            )
            offset += len(texts)
            chunk_index += 1

    async def GetModelInfo(
        self, request: embedding_pb2.GetModelInfoRequest, context: Context
    ) -> embedding_pb2.GetModelInfoResponse:
        info = self.embedder.info()
        return embedding_pb2.GetModelInfoResponse(
            model=info.model,
            backend=info.backend,
            dim=info.dim,
            max_tokens=info.max_tokens,
            normalized=info.normalized,
            max_texts_per_request=info.max_texts_per_request,
            max_chars_per_text=info.max_chars_per_text,
        )

    async def ClearCache(
        self, request: embedding_pb2.ClearCacheRequest, context: Context
    ) -> embedding_pb2.ClearCacheResponse:
        return embedding_pb2.ClearCacheResponse(cleared_entries=self.embedder.clear_cache())
