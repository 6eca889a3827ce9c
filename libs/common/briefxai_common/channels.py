"""Client channels to other BriefXAI services: metrics and tracing interceptors, the request and analysis
ids forwarded as metadata, round-robin, big messages."""

from __future__ import annotations

import json

import grpc

from briefxai_common import metrics, tracing
from briefxai_common.interceptors import forwarding_interceptors

SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def create_channel(address: str, max_message_mb: int = 256) -> grpc.aio.Channel:
    """An insecure aio channel; ``dns:///svc:port`` spreads calls over every address of a headless Service."""
    limit = max_message_mb * 1024 * 1024
    options = [
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.enable_retries", 0),
    ]
    interceptors = [
        *tracing.client_interceptors(),
        *metrics.client_interceptors(metrics.default_metrics()),
        *forwarding_interceptors(),
    ]
    return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
