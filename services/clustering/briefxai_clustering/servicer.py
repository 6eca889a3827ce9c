"""gRPC adapter: protobuf <-> the clustering pipeline. Domain errors are mapped to status codes by the
bootstrap's interceptor (InvalidArgument -> INVALID_ARGUMENT with field violations, ResourceExhausted...)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from briefxai.clustering.v1 import clustering_pb2, clustering_pb2_grpc
from briefxai.common.v1 import common_pb2
from briefxai_clustering import metrics
from briefxai_clustering.jobs import JobSlots
from briefxai_clustering.model import ClusteringInput, ClusteringParams, ClusteringResult
from briefxai_clustering.pipeline import ClusteringPipeline
from briefxai_clustering.settings import ClusteringSettings
from briefxai_clustering.validation import (
    RequestedParams,
    StreamAssembler,
    check_ids,
    check_shapes,
    decode_vectors,
    resolve_params,
)
from briefxai_common.errors import InvalidArgument, ServiceError
from briefxai_common.logging import get_logger
from briefxai_common.memory import release_free_memory

SERVICE_NAME = clustering_pb2.DESCRIPTOR.services_by_name["ClusteringService"].full_name
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
log = get_logger(__name__)
# Chunks with more floats than this are copied and checked in a worker thread, off the event loop.
CHUNK_FLOATS_IN_THREAD = 1 << 16


def _present(message: clustering_pb2.ClusteringParams, name: str) -> int | None:
    return int(getattr(message, name)) if message.HasField(name) else None  # type: ignore[arg-type]


def requested_params(message: clustering_pb2.ClusteringParams) -> RequestedParams:
    """The params as sent; an optional field the client left unset is None (the server's default)."""
    return RequestedParams(
        k=_present(message, "k"),
        hierarchy_depth=_present(message, "hierarchy_depth"),
        max_top_clusters=_present(message, "max_top_clusters"),
        min_cluster_size=_present(message, "min_cluster_size"),
        min_distinct_users=_present(message, "min_distinct_users"),
        seed=message.seed,
        skip_map=message.skip_map,
    )


def result_to_pb(result: ClusteringResult) -> clustering_pb2.ClusteringResult:
    return clustering_pb2.ClusteringResult(
        clusters=[
            common_pb2.Cluster(
                id=c.id,
                level=c.level,
                parent_id=c.parent_id,
                child_ids=c.child_ids,
                name=c.name,
                description=c.description,
                size=c.size,
                distinct_users=c.distinct_users,
                keywords=c.keywords,
            )
            for c in result.clusters
        ],
        assignments=[
            clustering_pb2.Assignment(
                conversation_id=a.conversation_id, cluster_id=a.cluster_id, withheld=a.withheld
            )
            for a in result.assignments
        ],
        points=[common_pb2.MapPoint(conversation_id=p.conversation_id, x=p.x, y=p.y) for p in result.points],
        k=result.k,
        k_rule=result.k_rule,
        base_algorithm=result.base_algorithm,
        map_algorithm=result.map_algorithm,
        withheld_count=result.withheld_count,
    )


def header_params(message: clustering_pb2.ClusteringParams, settings: ClusteringSettings) -> ClusteringParams:
    """``resolve_params`` for a stream header; field paths become ``header.params.*``."""
    try:
        return resolve_params(requested_params(message), settings)
    except InvalidArgument as error:
        raise InvalidArgument.many((f"header.{v.field}", v.description) for v in error.violations) from None


class ClusteringServicer(clustering_pb2_grpc.ClusteringServiceServicer):
    def __init__(self, pipeline: ClusteringPipeline, settings: ClusteringSettings, jobs: JobSlots) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.jobs = jobs

    async def GetLimits(
        self, request: clustering_pb2.GetLimitsRequest, context: Context
    ) -> clustering_pb2.GetLimitsResponse:
        return clustering_pb2.GetLimitsResponse(
            max_k=self.settings.max_k,
            max_hierarchy_depth=self.settings.max_hierarchy_depth,
            max_vectors=self.settings.max_vectors,
        )

    async def ClusterEmbeddings(
        self, request: clustering_pb2.ClusterEmbeddingsRequest, context: Context
    ) -> clustering_pb2.ClusterEmbeddingsResponse:
        packed = request.vectors
        ids, user_ids, texts = list(request.ids), list(request.user_ids), list(request.texts)
        check_shapes(
            packed.dim,
            packed.count,
            len(packed.data),
            ids,
            user_ids,
            texts,
            max_vectors=self.settings.max_vectors,
        )
        params = resolve_params(requested_params(request.params), self.settings)
        check_ids(ids)
        vectors = await asyncio.to_thread(decode_vectors, packed.data, packed.dim, packed.count)
        data = ClusteringInput(vectors=vectors, ids=ids, user_ids=user_ids, texts=texts)
        result = await self.jobs.run(lambda: self._cluster(data, params))
        return clustering_pb2.ClusterEmbeddingsResponse(result=result)

    async def StreamClusterEmbeddings(
        self,
        request_iterator: AsyncIterator[clustering_pb2.StreamClusterEmbeddingsRequest],
        context: Context,
    ) -> clustering_pb2.StreamClusterEmbeddingsResponse:
        """A header, then chunks copied straight into one preallocated array; then the same job."""
        data, params = await self._receive(request_iterator)
        # The assembled array belongs to this call alone: the pipeline sorts it in place, no copy.
        result = await self.jobs.run(lambda: self._cluster(data, params, consume_input=True))
        return clustering_pb2.StreamClusterEmbeddingsResponse(result=result)

    async def _receive(
        self, request_iterator: AsyncIterator[clustering_pb2.StreamClusterEmbeddingsRequest]
    ) -> tuple[ClusteringInput, ClusteringParams]:
        """The whole streamed input, checked message by message (INVALID_ARGUMENT names the chunk).

        After the first error the rest of the stream is read and dropped, and the error is raised once the
        client has half-closed: a grpc-python client that writes to a call the server already ended sees
        INTERNAL ("Internal error from Core") or hangs instead of the real status (and would not retry a
        RESOURCE_EXHAUSTED). The vectors received so far are freed at once.
        """
        assembler: StreamAssembler | None = StreamAssembler(
            max_vectors=self.settings.max_vectors, max_bytes=self.settings.max_message_mb * 2**20
        )
        params: ClusteringParams | None = None
        failure: ServiceError | None = None
        index = 0
        async for message in request_iterator:
            if assembler is not None:
                try:
                    params = await self._take(assembler, message, index) or params
                except ServiceError as error:
                    failure, assembler = error, None
            index += 1
            del message
        if failure is not None:
            raise failure
        assert assembler is not None  # noqa: S101  invariant for mypy, not a check on input
        vectors = assembler.finish()
        release_free_memory()  # the received messages' buffers, freed chunk by chunk
        assert params is not None  # noqa: S101  finish() checked that a header came
        data = ClusteringInput(
            vectors=vectors, ids=assembler.ids, user_ids=assembler.user_ids, texts=assembler.texts
        )
        return data, params

    async def _take(
        self,
        assembler: StreamAssembler,
        message: clustering_pb2.StreamClusterEmbeddingsRequest,
        index: int,
    ) -> ClusteringParams | None:
        """Checks and keeps one message of the stream; the resolved params when it is the header."""
        kind = message.WhichOneof("payload")
        if kind == "header":
            header = message.header
            assembler.header(header.count, header.dim)
            params = header_params(header.params, self.settings)
            # Refuse early when the queue is full, before taking every vector (jobs.run checks again).
            self.jobs.check_capacity()
            return params
        if kind == "chunk":
            chunk = message.chunk
            raw = chunk.vectors.data  # read once: each read of a bytes field makes a new copy
            assembler.check_chunk(
                len(raw), chunk.vectors.dim, chunk.vectors.count, chunk.ids, chunk.user_ids, chunk.texts
            )
            if chunk.vectors.count * chunk.vectors.dim > CHUNK_FLOATS_IN_THREAD:
                await asyncio.to_thread(assembler.add_chunk, raw, chunk.ids, chunk.user_ids, chunk.texts)
            else:
                assembler.add_chunk(raw, chunk.ids, chunk.user_ids, chunk.texts)
            return None
        raise InvalidArgument("payload", f"message {index} of the stream has neither header nor chunk")

    def _cluster(
        self, data: ClusteringInput, params: ClusteringParams, *, consume_input: bool = False
    ) -> clustering_pb2.ClusteringResult:
        """Runs in a worker thread: the pipeline, then the (large) response message; the pipeline's freed
        temporaries go back to the OS before the response is built."""
        result = self.pipeline.run(data, params, consume_input=consume_input)
        release_free_memory()
        for stage, seconds in result.timings.items():
            metrics.STAGE_SECONDS.labels(stage).observe(seconds)
        metrics.VECTORS.inc(len(data.ids))
        metrics.WITHHELD.inc(result.withheld_count)
        log.info(
            "clustered",
            vectors=len(data.ids),
            dim=int(data.vectors.shape[1]),
            k=result.k,
            k_rule=result.k_rule,
            clusters=len(result.clusters),
            withheld=result.withheld_count,
            base_algorithm=result.base_algorithm,
            map_algorithm=result.map_algorithm,
            seconds={stage: round(s, 3) for stage, s in result.timings.items()},
        )
        return result_to_pb(result)
