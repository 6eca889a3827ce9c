"""``python -m briefxai_common.healthcheck --port N [--host H] [--service NAME] [--timeout S]``.

One ``grpc.health.v1`` Check against a BriefXAI server: exit status 0 when it answers SERVING, 1 otherwise
(NOT_SERVING, an unknown service name, no answer within the timeout), with the reason on stderr. It is the
images' Docker ``HEALTHCHECK``: they ship no ``grpc_health_probe`` binary, and the services' own
dependencies already hold grpc's health stubs. Kubernetes uses its native ``grpc:`` probes instead.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING


def check(address: str, service: str = "", timeout: float = 3.0) -> tuple[bool, str]:
    """Whether the server at ``address`` says SERVING for ``service`` ("" = the server as a whole), and
    what it said (the status name, or the call's error code and details)."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call):
                return False, f"{error.code().name}: {error.details()}"
            raise
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == SERVING, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m briefxai_common.healthcheck",
        description="Exit 0 when the gRPC server's grpc.health.v1 Check says SERVING, 1 otherwise.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="server address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="the server's gRPC port")
    parser.add_argument("--service", default="", help="service name to check (default: the whole server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    address = f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"
    serving, said = check(address, args.service, args.timeout)
    print(f"{address} {args.service or '(server)'}: {said}", file=sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
