"""The google.rpc error details of a failed gRPC call, as tests read them."""

from __future__ import annotations

from typing import cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """``(field, description)`` of each google.rpc BadRequest field violation of a failed call, in order.

    Read from the call's ``grpc-status-details-bin`` trailer; works for sync and ``grpc.aio`` errors.
    Fails the test when the status carries no BadRequest.
    """
    status = rpc_status.from_call(cast(grpc.Call, error))  # both error kinds have the methods it reads
    assert status is not None, "the call's status has no details"
    bad_request = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad_request) for detail in status.details), "no BadRequest in the details"
    return [(v.field, v.description) for v in bad_request.field_violations]
