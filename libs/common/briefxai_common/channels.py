"""Client channels to other BriefXAI services: metrics and tracing interceptors, the request and analysis
ids forwarded as metadata, round-robin over healthy replicas, big messages.

An address names one server (``host:port``) or several: ``dns:///name:port`` (every address the name
resolves to, as a Kubernetes headless Service gives), or a list of IP literals, ``ipv4:127.0.0.1:5001,
127.0.0.1:5002`` (gRPC's own syntax; a bare comma list of IP literals is accepted and given the
scheme). Calls rotate over the replicas whose connection is up and whose ``grpc.health.v1`` status is
SERVING (gRPC's client-side health checking): a replica that dies, is still loading its model, or
drains leaves the rotation until it serves again.

With TLS settings whose calls are secure the channel is TLS (mTLS when the process has a certificate of
its own); with a service token every call carries it (``service_auth.py``).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from typing import Any

import grpc

from briefxai_common import metrics, tracing
from briefxai_common.config import TLSSettings
from briefxai_common.interceptors import forwarding_interceptors
from briefxai_common.service_auth import token_interceptors
from briefxai_common.tls import channel_credentials, channel_options

# healthCheckConfig makes round_robin watch each replica's overall ("") health and skip those not SERVING.
SERVICE_CONFIG = json.dumps(
    {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ""}}
)
# A replica that went away is tried again at most this far apart, so one restarted rejoins within seconds
# (gRPC's default backoff grows to two minutes). The connect timeout keeps gRPC's 20 s minimum.
RECONNECT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]
SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")


def channel_target(address: str) -> str:
    """The gRPC target for ``address``: unchanged unless it is a bare comma list of IP literals
    (``127.0.0.1:5001,127.0.0.1:5002`` becomes ``ipv4:127.0.0.1:5001,127.0.0.1:5002``).

    Raises ValueError for a list that gRPC cannot resolve (host names, mixed families, missing ports).
    """
    address = address.strip()
    if address.startswith(SCHEMES) or "," not in address:
        return address
    families = set()
    for item in address.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"{item.strip()!r} in {address!r} is not host:port")
        try:
            families.add(ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).version)
        except ValueError:
            raise ValueError(
                f"a list of addresses takes IP literals ({host!r} in {address!r} is not one); "
                "name several servers with dns:///name:port instead"
            ) from None
    if len(families) > 1:
        raise ValueError(f"{address!r} mixes IPv4 and IPv6 addresses")
    scheme = "ipv4:" if families == {4} else "ipv6:"
    return scheme + ",".join(item.strip() for item in address.split(","))


def address_list(addresses: Sequence[str]) -> str:
    """One target over ``addresses`` (``host:port`` with IP literal hosts): the address itself for one."""
    return addresses[0] if len(addresses) == 1 else channel_target(",".join(addresses))


def create_channel(
    address: str,
    max_message_mb: int = 256,
    *,
    tls: TLSSettings | None = None,
    service_token: str = "",
) -> grpc.aio.Channel:
    """An aio channel that spreads calls over every SERVING replica ``address`` names: TLS when ``tls``
    says calls are secure (``tls.cert_file`` or ``tls.ca_file`` set; see :mod:`briefxai_common.tls`),
    with ``service_token`` sent on every call when set."""
    limit = max_message_mb * 1024 * 1024
    options = [
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.enable_retries", 0),
        *RECONNECT_OPTIONS,
    ]
    interceptors = [
        *tracing.client_interceptors(),
        *metrics.client_interceptors(metrics.default_metrics()),
        *forwarding_interceptors(),
        *token_interceptors(service_token),
    ]
    return open_channel(address, tls, options, interceptors)


def open_channel(
    address: str,
    tls: TLSSettings | None,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[Any] = (),
) -> grpc.aio.Channel:
    """A bare aio channel to ``address``: over TLS when ``tls.calls_secure`` (with its name override)."""
    target = channel_target(address)
    if tls is None or not tls.calls_secure:
        return grpc.aio.insecure_channel(target, options=list(options), interceptors=list(interceptors))
    return grpc.aio.secure_channel(
        target,
        channel_credentials(tls),
        options=[*options, *channel_options(tls)],
        interceptors=list(interceptors),
    )
