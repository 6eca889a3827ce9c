"""A small synchronous client for the gateway's AnalysisService, as the CLI uses it.

It converts input records to protobuf, picks inline ``CreateAnalysis`` or client-streaming
``UploadAnalysis`` by size, follows progress with ``WatchAnalysis`` (opening the stream again, with a
jittered backoff, when it breaks: a gateway that restarts resumes its analyses, and ``wait`` keeps
following them), gathers every page of ``GetAnalysisResults`` and turns gRPC errors into one line with
the status code and any ``google.rpc`` field violations.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential

from briefxai.common.v1 import common_pb2
from briefxai.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from briefxai_cli.inputs import ConversationRecord
from briefxai_common.conversations_proto import conversation_to_proto

DEFAULT_GATEWAY = "127.0.0.1:50051"
GATEWAY_ENV = "BRIEFXAI_CLI_GATEWAY"
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
# Above either limit a request goes through UploadAnalysis in batches instead of one CreateAnalysis.
INLINE_MAX_CONVERSATIONS = 5000
INLINE_MAX_BYTES = 16 * 1024 * 1024
UPLOAD_BATCH_BYTES = 4 * 1024 * 1024
UPLOAD_BATCH_MAX = 1000
RESULTS_PAGE_SIZE = 1000

EMBED_TEXT = {
    "conversation": gateway_pb2.EMBED_TEXT_CONVERSATION,
    "user": gateway_pb2.EMBED_TEXT_USER_MESSAGES,
    "first": gateway_pb2.EMBED_TEXT_FIRST_USER_MESSAGE,
    "summary": gateway_pb2.EMBED_TEXT_REQUEST_SUMMARY,
}
TERMINAL_STATES = frozenset(
    {
        gateway_pb2.ANALYSIS_STATE_SUCCEEDED,
        gateway_pb2.ANALYSIS_STATE_FAILED,
        gateway_pb2.ANALYSIS_STATE_CANCELLED,
    }
)
# Watch stream failures after which the stream is opened again: the gateway stopping or restarting
# (UNAVAILABLE; CANCELLED when it drains), a proxy cutting a long stream.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)
# How long ``wait`` keeps trying to reach a gateway that went away (since it last answered).
RECONNECT_SECONDS = 600.0
RECONNECT_BACKOFF_SECONDS = 0.5
RECONNECT_MAX_BACKOFF_SECONDS = 5.0


def state_name(state: int) -> str:
    return gateway_pb2.AnalysisState.Name(state).removeprefix("ANALYSIS_STATE_")


def stage_name(stage: int) -> str:
    return gateway_pb2.Stage.Name(stage).removeprefix("STAGE_")


def error_text(status: status_pb2.Status) -> str:
    """A failed analysis's google.rpc.Status as one line: ``UNAVAILABLE: embedding service ...``."""
    code = code_pb2.Code.Name(status.code) if status.code in code_pb2.Code.values() else str(status.code)
    return f"{code}: {status.message}"


def analysis_id(value: str) -> str:
    """Accepts ``abc`` or ``analyses/abc``."""
    return value.strip().removeprefix("analyses/")


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Longer windows are sent as this (the gateway cuts any window to its retention period anyway).
MAX_WINDOW_SECONDS = 3650 * 86400.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds of ``90s``, ``30m``, ``24h``, ``7d``, ``2w``, ``1h30m`` or a plain number of seconds;
    ValueError otherwise."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"{text!r} is not a finite number of seconds")
        return seconds
    parts = _DURATION.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        raise ValueError(f"{text!r} is not a duration such as 90m, 24h or 7d")
    return sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)


# --------------------------------------------------------------------------------------------------
# Conversion


def to_proto(record: ConversationRecord) -> common_pb2.Conversation:
    return conversation_to_proto(record)


def build_options(
    *,
    k: int | None = None,
    depth: int | None = None,
    min_cluster_size: int | None = None,
    min_users: int | None = None,
    seed: int | None = None,
    embed_text: str | None = None,
    embed_tokens: int | None = None,
    facets: Sequence[str] = (),
    display_name: str = "",
) -> gateway_pb2.AnalysisOptions:
    """Analysis options; None leaves an option unset, so the gateway's default applies."""
    return gateway_pb2.AnalysisOptions(
        facets=list(facets),
        k=k,
        hierarchy_depth=depth,
        min_cluster_size=min_cluster_size,
        min_distinct_users=min_users,
        seed=seed,
        embed_text=EMBED_TEXT[embed_text] if embed_text else gateway_pb2.EMBED_TEXT_UNSPECIFIED,
        display_name=display_name,
        embed_token_budget=embed_tokens,
    )


def to_json(message: Message) -> dict[str, Any]:
    """Protobuf → JSON-ready dict with field names as in the .proto and every field present."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


# --------------------------------------------------------------------------------------------------
# Errors


@dataclass
class CliError(Exception):
    """A failure to report as one line, exiting non-zero."""

    message: str

    def __str__(self) -> str:
        return self.message


def describe_rpc_error(error: grpc.RpcError, records: Sequence[ConversationRecord] | None = None) -> str:
    """``INVALID_ARGUMENT: message [conversations[2].messages (line 5): must not be empty; ...]``."""
    code = error.code() if isinstance(error, grpc.Call) else None
    details = error.details() if isinstance(error, grpc.Call) else str(error)
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    return format_status(code.name if code else "UNKNOWN", details or "", status, records)


def format_status(
    code_name: str,
    message: str,
    status: status_pb2.Status | None = None,
    records: Sequence[ConversationRecord] | None = None,
) -> str:
    parts = [f"{code_name}: {message}" if message else code_name]
    extras: list[str] = []
    for detail in status.details if status is not None else ():
        bad_request = error_details_pb2.BadRequest()
        retry = error_details_pb2.RetryInfo()
        info = error_details_pb2.ErrorInfo()
        resource = error_details_pb2.ResourceInfo()
        if detail.Unpack(bad_request):
            violations = [
                f"{_with_line(v.field, records)}: {v.description}" for v in bad_request.field_violations
            ]
            if violations:
                extras.append("field violations: " + "; ".join(violations))
        elif detail.Unpack(retry):
            delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
            extras.append(f"retry after {delay:g}s")
        elif detail.Unpack(info):
            extras.append(f"reason {info.reason}" + (f" ({info.domain})" if info.domain else ""))
        elif detail.Unpack(resource):
            extras.append(f"{resource.resource_type} {resource.resource_name}".strip())
    if code_name == "UNAVAILABLE":
        extras.append("is the gateway running? start the suite with `briefxai up`")
    if extras:
        parts.append("[" + " | ".join(extras) + "]")
    return " ".join(parts).replace("\n", " ")


_INDEX = re.compile(r"^conversations\[(\d+)\]")


def _with_line(field_path: str, records: Sequence[ConversationRecord] | None) -> str:
    """Adds the input line and id to ``conversations[i]...`` paths, when the records are known."""
    match = _INDEX.match(field_path)
    if not match or records is None:
        return field_path
    index = int(match.group(1))
    if index >= len(records):
        return field_path
    record = records[index]
    return f"{field_path} (line {record.line}, id {record.id!r})"


# --------------------------------------------------------------------------------------------------
# The client


class _StreamEnded(Exception):
    """The watch stream ended before the analysis was terminal (the gateway drained it)."""


def _reconnectable(exc: BaseException) -> bool:
    if isinstance(exc, _StreamEnded):
        return True
    return isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call) and exc.code() in RETRYABLE


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, metadata: list[tuple[str, str]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class MetadataInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``pairs`` to the metadata of every call of every kind made through the channel."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = list(pairs)

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(details, [*(details.metadata or ()), *self.pairs])

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)


def _read_pem(what: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise CliError(f"cannot read the {what} {path}: {exc}") from exc


class GatewayClient:
    """``api_key``: sent as ``authorization: Bearer <key>`` on every call. ``ca_file``: TLS, the gateway's
    certificate verified with this CA (PEM); ``cert_file``/``key_file``: a client certificate for a gateway
    that asks for one (mTLS). ``server_name``: the name checked in the gateway's certificate instead of
    the host of ``address``."""

    def __init__(
        self,
        address: str,
        timeout: float = 60.0,
        reconnect_seconds: float = RECONNECT_SECONDS,
        *,
        api_key: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        server_name: str | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.reconnect_seconds = reconnect_seconds
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        if bool(cert_file) != bool(key_file):
            raise CliError("a client certificate needs both its certificate and its key file")
        channel: grpc.Channel
        if ca_file or cert_file:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read_pem("CA certificate", ca_file) if ca_file else None,
                private_key=_read_pem("client key", key_file) if key_file else None,
                certificate_chain=_read_pem("client certificate", cert_file) if cert_file else None,
            )
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            channel = grpc.secure_channel(address, credentials, options=options)
        else:
            channel = grpc.insecure_channel(address, options=options)
        api_key = (api_key or "").strip()
        if api_key:
            channel = grpc.intercept_channel(
                channel, MetadataInterceptor([("authorization", f"Bearer {api_key}")])
            )
        self.channel = channel
        self.stub = gateway_pb2_grpc.AnalysisServiceStub(self.channel)

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    # -- creating -----------------------------------------------------------------------------------

    def create(
        self,
        records: Sequence[ConversationRecord],
        options: gateway_pb2.AnalysisOptions,
        *,
        request_id: str | None = None,
        stream: bool | None = None,
    ) -> gateway_pb2.Analysis:
        """Starts an analysis; ``stream=None`` streams when the input is too large for one message."""
        request_id = request_id or str(uuid.uuid4())
        conversations = [to_proto(record) for record in records]
        if stream is None:
            size = sum(c.ByteSize() for c in conversations)
            stream = len(conversations) > INLINE_MAX_CONVERSATIONS or size > INLINE_MAX_BYTES
        if stream:
            response = self.stub.UploadAnalysis(
                _upload_requests(conversations, options, request_id), timeout=max(self.timeout, 600.0)
            )
            return response.analysis
        request = gateway_pb2.CreateAnalysisRequest(
            conversations=conversations, options=options, request_id=request_id
        )
        return self.stub.CreateAnalysis(request, timeout=max(self.timeout, 300.0)).analysis

    # -- reading ------------------------------------------------------------------------------------

    def get(self, id: str) -> gateway_pb2.Analysis:
        request = gateway_pb2.GetAnalysisRequest(id=analysis_id(id))
        return self.stub.GetAnalysis(request, timeout=self.timeout).analysis

    def list(self, page_size: int = 100, limit: int | None = None) -> Iterator[gateway_pb2.Analysis]:
        token = ""
        count = 0
        while True:
            request = gateway_pb2.ListAnalysesRequest(page_size=page_size, page_token=token)
            response = self.stub.ListAnalyses(request, timeout=self.timeout)
            for analysis in response.analyses:
                yield analysis
                count += 1
                if limit is not None and count >= limit:
                    return
            token = response.next_page_token
            if not token:
                return

    def watch(self, id: str) -> Iterator[gateway_pb2.WatchAnalysisResponse]:
        yield from self.stub.WatchAnalysis(gateway_pb2.WatchAnalysisRequest(id=analysis_id(id)))

    def cancel(self, id: str) -> gateway_pb2.Analysis:
        request = gateway_pb2.CancelAnalysisRequest(id=analysis_id(id))
        return self.stub.CancelAnalysis(request, timeout=self.timeout).analysis

    def delete(self, id: str) -> None:
        self.stub.DeleteAnalysis(gateway_pb2.DeleteAnalysisRequest(id=analysis_id(id)), timeout=self.timeout)

    def results(
        self, id: str, page_size: int = RESULTS_PAGE_SIZE, revision: int | None = None
    ) -> gateway_pb2.GetAnalysisResultsResponse:
        """Every page of the results merged into one response (clusters from the first page);
        ``revision``: that revision of the results (None: the newest)."""
        merged = gateway_pb2.GetAnalysisResultsResponse()
        token = ""
        first = True
        seen_tokens: set[str] = set()
        while True:
            request = gateway_pb2.GetAnalysisResultsRequest(
                id=analysis_id(id),
                page_size=page_size,
                page_token=token,
                revision=revision if first else None,  # later pages: the token carries it
            )
            page = self.stub.GetAnalysisResults(request, timeout=self.timeout)
            if first:
                merged.CopyFrom(page)
                first = False
            else:
                merged.conversations.extend(page.conversations)
                if page.clusters:
                    raise CliError("GetAnalysisResults sent clusters again on a later page")
            token = page.next_page_token
            if not token:
                break
            if token in seen_tokens:
                raise CliError(f"GetAnalysisResults repeated page token {token!r}")
            seen_tokens.add(token)
        merged.next_page_token = ""
        return merged

    def clusters(self, id: str, revision: int | None = None) -> gateway_pb2.GetAnalysisResultsResponse:
        """The first page of a revision of the results: the tree and the counts, one conversation."""
        request = gateway_pb2.GetAnalysisResultsRequest(id=analysis_id(id), page_size=1, revision=revision)
        return self.stub.GetAnalysisResults(request, timeout=self.timeout)

    # -- assigning ----------------------------------------------------------------------------------

    def assign(
        self, id: str, records: Sequence[ConversationRecord], *, request_id: str | None = None
    ) -> gateway_pb2.AssignConversationsResponse:
        """New conversations into a finished analysis (a new revision of its results)."""
        request = gateway_pb2.AssignConversationsRequest(
            id=analysis_id(id),
            conversations=[to_proto(record) for record in records],
            request_id=request_id or str(uuid.uuid4()),
        )
        return self.stub.AssignConversations(request, timeout=max(self.timeout, 600.0))

    def performance_report(
        self, window_seconds: float | None = None
    ) -> gateway_pb2.GetPerformanceReportResponse:
        """The gateway's performance report over the last ``window_seconds`` (None: its default, 24 h)."""
        request = gateway_pb2.GetPerformanceReportRequest()
        if window_seconds is not None:
            request.window.FromTimedelta(timedelta(seconds=min(window_seconds, MAX_WINDOW_SECONDS)))
        return self.stub.GetPerformanceReport(request, timeout=self.timeout)

    # -- following ----------------------------------------------------------------------------------

    def wait(
        self,
        id: str,
        on_update: Callable[[gateway_pb2.WatchAnalysisResponse], None] | None = None,
        on_reconnect: Callable[[str], None] | None = None,
    ) -> gateway_pb2.Analysis:
        """Follows the analysis until it is terminal; returns its final state.

        When the stream breaks (see :data:`RETRYABLE`) it is opened again after a jittered backoff, for
        as long as the gateway has answered within the last ``reconnect_seconds``; then the last error is
        raised. ``on_reconnect(message)`` is told once per outage."""
        contact = time.monotonic()
        told = False

        def follow() -> gateway_pb2.Analysis:
            nonlocal contact, told
            for update in self.watch(id):
                contact, told = time.monotonic(), False
                if on_update is not None:
                    on_update(update)
                if update.analysis.state in TERMINAL_STATES:
                    return update.analysis
            analysis = self.get(id)
            contact, told = time.monotonic(), False
            if on_update is not None:
                on_update(watch_update(analysis))
            if analysis.state in TERMINAL_STATES:
                return analysis
            raise _StreamEnded()

        def lost(state: RetryCallState) -> None:
            nonlocal told
            exc = state.outcome.exception() if state.outcome is not None else None
            if told or on_reconnect is None or isinstance(exc, _StreamEnded):
                return
            told = True
            reason = describe_rpc_error(exc) if isinstance(exc, grpc.RpcError) else str(exc)
            on_reconnect(
                f"lost the gateway at {self.address} ({reason.split(' [')[0]}); reconnecting for up to "
                f"{self.reconnect_seconds:g} s"
            )

        retrying = Retrying(
            retry=retry_if_exception(_reconnectable),
            stop=lambda _: time.monotonic() - contact > self.reconnect_seconds,
            wait=wait_random_exponential(
                multiplier=RECONNECT_BACKOFF_SECONDS, max=RECONNECT_MAX_BACKOFF_SECONDS
            ),
            before_sleep=lost,
            reraise=True,
        )
        return retrying(follow)


def watch_update(analysis: gateway_pb2.Analysis) -> gateway_pb2.WatchAnalysisResponse:
    """The progress of a GetAnalysis answer in WatchAnalysis form (used when polling)."""
    return gateway_pb2.WatchAnalysisResponse(analysis=analysis, eta_seconds=-1.0)


def _upload_requests(
    conversations: Sequence[common_pb2.Conversation], options: gateway_pb2.AnalysisOptions, request_id: str
) -> Iterator[gateway_pb2.UploadAnalysisRequest]:
    yield gateway_pb2.UploadAnalysisRequest(
        header=gateway_pb2.UploadHeader(options=options, request_id=request_id)
    )
    batch: list[common_pb2.Conversation] = []
    size = 0
    for conversation in conversations:
        item_size = conversation.ByteSize()
        if batch and (size + item_size > UPLOAD_BATCH_BYTES or len(batch) >= UPLOAD_BATCH_MAX):
            yield gateway_pb2.UploadAnalysisRequest(batch=gateway_pb2.ConversationBatch(conversations=batch))
            batch, size = [], 0
        batch.append(conversation)
        size += item_size
    if batch:
        yield gateway_pb2.UploadAnalysisRequest(batch=gateway_pb2.ConversationBatch(conversations=batch))
