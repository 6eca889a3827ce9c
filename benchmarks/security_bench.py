"""What security costs: per-call latency of the gateway's authentication and audit trail, and the
redaction of conversation text as it arrives.

    python -m benchmarks.security_bench [--calls 2000]

A gateway process alone (SQLite store; no workers: the calls measured never reach them), once with
``auth.mode: on`` and once ``off``. ``ListAnalyses`` is authenticated (API key, cached) but not
recorded; ``CancelAnalysis`` of an id that does not exist is authenticated *and* appended to the audit
trail (one hash-chained row per call, under the appender's lock), then answers NOT_FOUND. Median and
p95 of one client calling in a loop. Then ``privacy.redact_stored_text`` on the bundled sample
conversations: microseconds per conversation for ``secrets`` (the default) and ``all``.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import grpc

from benchmarks.common import conversation_records, running_services
from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli.client import GatewayClient
from briefxai_common.pii import redact, redact_secrets


def timed_calls(call: Callable[[], object], count: int) -> tuple[float, float]:
    """(median, p95) milliseconds of ``count`` calls of ``call``, after 50 untimed ones."""
    for _ in range(50):
        call()
    durations = []
    for _ in range(count):
        began = time.perf_counter()
        call()
        durations.append((time.perf_counter() - began) * 1000)
    durations.sort()
    return statistics.median(durations), durations[int(len(durations) * 0.95) - 1]


def gateway_latencies(mode: str, count: int) -> dict[str, tuple[float, float]]:
    with running_services(["gateway"], extra_env={"BRIEFXAI_GATEWAY_AUTH__MODE": mode}) as suite:
        key = suite.admin_key if mode == "on" else None
        with GatewayClient(suite.gateway_address, api_key=key) as client:

            def listing() -> object:
                return client.stub.ListAnalyses(gateway_pb2.ListAnalysesRequest(page_size=1), timeout=10)

            def cancel() -> object:
                try:
                    return client.stub.CancelAnalysis(
                        gateway_pb2.CancelAnalysisRequest(id="absent"), timeout=10
                    )
                except grpc.RpcError as error:
                    return error

            return {"ListAnalyses": timed_calls(listing, count), "CancelAnalysis": timed_calls(cancel, count)}


def redaction_cost(texts: Sequence[str]) -> dict[str, float]:
    """Microseconds per conversation of each redaction mode over ``texts`` (one per conversation)."""
    costs = {}
    for name, redactor in (("secrets", redact_secrets), ("all", redact)):
        began = time.perf_counter()
        for text in texts:
            redactor(text)
        costs[name] = (time.perf_counter() - began) / len(texts) * 1e6
    return costs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.security_bench", description=__doc__)
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per RPC and mode")
    args = parser.parse_args(argv)
    results = {mode: gateway_latencies(mode, args.calls) for mode in ("off", "on")}
    print(f"gateway, one client, {args.calls} calls each (median / p95 ms):")
    for rpc in ("ListAnalyses", "CancelAnalysis"):
        off, on = results["off"][rpc], results["on"][rpc]
        print(
            f"  {rpc:15s} auth off {off[0]:.2f} / {off[1]:.2f}   auth on {on[0]:.2f} / {on[1]:.2f}   "
            f"({on[0] - off[0]:+.2f} ms median)"
        )
    texts = ["\n".join(m.content for m in record.messages) for record in conversation_records(400, 7)]
    costs = redaction_cost(texts)
    chars = sum(map(len, texts)) / len(texts)
    print(f"redaction of stored text, {len(texts)} sample conversations ({chars:.0f} characters on average):")
    for name, micros in costs.items():
        print(f"  {name:8s} {micros:.0f} µs per conversation")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
