"""Client helpers that need no server: protobuf conversion, upload batching, error lines."""

from __future__ import annotations

from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from briefxai.common.v1 import common_pb2
from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli import client
from briefxai_cli.client import analysis_id, build_options, format_status, to_proto
from briefxai_cli.inputs import ConversationRecord, Message


def record(cid: str, line: int, text: str = "hello") -> ConversationRecord:
    return ConversationRecord(
        cid, "u", (Message("user", text), Message("assistant", "hi")), {"label": "x"}, line
    )


def packed(*messages: object) -> list[any_pb2.Any]:
    details = []
    for message in messages:
        item = any_pb2.Any()
        item.Pack(message)  # type: ignore[arg-type]
        details.append(item)
    return details


def test_to_proto_maps_roles_and_metadata() -> None:
    proto = to_proto(record("c1", 1))
    assert proto.id == "c1" and proto.user_id == "u"
    assert [m.role for m in proto.messages] == [common_pb2.ROLE_USER, common_pb2.ROLE_ASSISTANT]
    assert dict(proto.metadata) == {"label": "x"}


def test_build_options() -> None:
    options = build_options(
        k=12, depth=2, min_cluster_size=5, min_users=3, seed=9, embed_text="first", facets=["a"]
    )
    assert (options.k, options.hierarchy_depth, options.min_cluster_size, options.min_distinct_users) == (
        12,
        2,
        5,
        3,
    )
    assert options.seed == 9 and list(options.facets) == ["a"]
    assert options.embed_text == gateway_pb2.EMBED_TEXT_FIRST_USER_MESSAGE
    assert build_options().embed_text == gateway_pb2.EMBED_TEXT_UNSPECIFIED


def test_analysis_id_accepts_resource_names() -> None:
    assert analysis_id("analyses/abc") == analysis_id(" abc ") == "abc"


def test_field_violations_name_the_input_line() -> None:
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field="conversations[1].messages[0].content", description="must be non-empty"
            ),
            error_details_pb2.BadRequest.FieldViolation(
                field="options.k", description="must be at most 1000"
            ),
            error_details_pb2.BadRequest.FieldViolation(field="conversations[9].id", description="duplicate"),
        ]
    )
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="bad request", details=packed(bad))
    line = format_status("INVALID_ARGUMENT", "bad request", status, [record("a", 3), record("b", 7)])
    assert line == (
        "INVALID_ARGUMENT: bad request [field violations: conversations[1].messages[0].content (line 7, id 'b'): "
        "must be non-empty; options.k: must be at most 1000; conversations[9].id: duplicate]"
    )


def test_other_details_and_hints() -> None:
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=500_000_000))
    info = error_details_pb2.ErrorInfo(reason="QUEUE_FULL", domain="briefxai")
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="busy", details=packed(retry, info))
    assert format_status("RESOURCE_EXHAUSTED", "busy\nnow", status) == (
        "RESOURCE_EXHAUSTED: busy now [retry after 2.5s | reason QUEUE_FULL (briefxai)]"
    )
    assert "briefxai up" in format_status("UNAVAILABLE", "connection refused")
    assert format_status("NOT_FOUND", "") == "NOT_FOUND"


def test_upload_requests_send_the_header_then_bounded_batches() -> None:
    conversations = [to_proto(record(f"c{i}", i, "x" * 50)) for i in range(25)]
    options = build_options(k=3)
    requests = list(client._upload_requests(conversations, options, "rid"))
    assert requests[0].WhichOneof("payload") == "header"
    assert requests[0].header.request_id == "rid" and requests[0].header.options.k == 3
    batches = [r.batch for r in requests[1:]]
    assert all(r.WhichOneof("payload") == "batch" for r in requests[1:])
    assert [c.id for b in batches for c in b.conversations] == [f"c{i}" for i in range(25)]
    assert all(len(b.conversations) <= client.UPLOAD_BATCH_MAX for b in batches)


def test_upload_batches_split_by_bytes() -> None:
    big = [to_proto(record(f"c{i}", i, "y" * (client.UPLOAD_BATCH_BYTES // 3))) for i in range(7)]
    requests = list(client._upload_requests(big, build_options(), "r"))
    sizes = [len(r.batch.conversations) for r in requests[1:]]
    assert sum(sizes) == 7 and max(sizes) <= 3 and len(sizes) >= 3
