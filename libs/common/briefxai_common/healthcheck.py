"""``python -m briefxai_common.healthcheck --port N [--host H] [--service NAME] [--timeout S]
[--section S] [--server-name NAME]``.

One ``grpc.health.v1`` Check against a BriefXAI server: exit status 0 when it answers SERVING, 1 otherwise
(NOT_SERVING, an unknown service name, no answer within the timeout), with the reason on stderr. It is the
images' Docker ``HEALTHCHECK``: they ship no ``grpc_health_probe`` binary, and the services' own
dependencies already hold grpc's health stubs. Kubernetes uses its native ``grpc:`` probes instead (HTTPS
GETs of ``/readyz`` and ``/livez`` when the chart turns TLS on: its gRPC probes speak plaintext only).

With ``--section gateway|embedding|facets|clustering`` the check reads that service's ``tls`` settings
(its section of ``BRIEFXAI_CONFIG``, then ``BRIEFXAI_<SECTION>_TLS__*``): when the service serves TLS the
check does too, trusting ``tls.ca_file`` (else ``tls.client_ca_file``, else the system's roots), presenting
the service's own certificate (which an mTLS port asks for), and checking the name ``--server-name``, else
``tls.server_name``, else the host.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from briefxai_common.config import ConfigError, TLSSettings, section_tls
from briefxai_common.tls import channel_credentials

SERVING = health_pb2.HealthCheckResponse.SERVING


def probe_channel(address: str, tls: TLSSettings | None, server_name: str = "") -> grpc.Channel:
    """A channel to a server whose own TLS settings are ``tls``: plaintext unless it serves TLS; then
    its CA (``ca_file``, else ``client_ca_file``) is trusted and its certificate presented."""
    if tls is None or not tls.enabled:
        return grpc.insecure_channel(address)
    trusted = tls.model_copy(update={"ca_file": tls.ca_file or tls.client_ca_file})
    name = server_name or tls.server_name
    options = [("grpc.ssl_target_name_override", name)] if name else []
    return grpc.secure_channel(address, channel_credentials(trusted), options=options)


def check(
    address: str,
    service: str = "",
    timeout: float = 3.0,
    tls: TLSSettings | None = None,
    server_name: str = "",
) -> tuple[bool, str]:
    """Whether the server at ``address`` says SERVING for ``service`` ("" = the server as a whole), and
    what it said (the status name, or the call's error code and details). ``tls``: the server's own TLS
    settings (None or plaintext ones: a plaintext call)."""
    with probe_channel(address, tls, server_name) as channel:
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
    parser.add_argument(
        "--section",
        default="",
        help="service whose tls settings to use (gateway, embedding, facets, clustering; default: plaintext)",
    )
    parser.add_argument("--server-name", default="", help="name to check in the server's TLS certificate")
    args = parser.parse_args(argv)
    address = f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"
    try:
        tls = section_tls(args.section) if args.section else None
    except ConfigError as error:
        print(f"{address}: {error}", file=sys.stderr)
        return 1
    serving, said = check(address, args.service, args.timeout, tls, args.server_name)
    print(f"{address} {args.service or '(server)'}: {said}", file=sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
