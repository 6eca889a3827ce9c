"""The HTML report of a real analysis (real embedding, facets and clustering services behind a real
gateway): served at /analyses/{id}/report on the gateway's HTTP port, written by `briefxai report`
(a real CLI process) from the gateway and from a saved analysis.json, all three the same page; opened
in headless Chromium: no console error, no injected script run, one point per reported conversation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from briefxai.common.v1 import common_pb2
from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli.client import to_json
from briefxai_common.bootstrap import RunningService, start_service
from briefxai_report import render_report
from tests.e2e.support import run_cli
from tests.support.chromium import hover_point, open_page
from tests.support.http import http_get

from .conftest import LOCAL, GatewayFactory, GatewayHandle, conversations, every_downstream, retry_until_back

pytestmark = pytest.mark.asyncio(loop_scope="session")

XSS = "<script>alert(1)</script>"
STARS = [
    "Which telescope should I buy to see the rings of Saturn and the moons of Jupiter",
    "How far away is the Andromeda galaxy from the Milky Way in light years",
    "When is the next meteor shower visible from the northern hemisphere at night",
    "Why does the planet Mars look red through a small telescope",
]
COUNT_POINTS = "document.querySelectorAll('#map circle.point').length"


def chat(cid: str, user: str, *texts: str) -> common_pb2.Conversation:
    return common_pb2.Conversation(
        id=cid,
        user_id=user,
        messages=[
            *(common_pb2.Message(role=common_pb2.ROLE_USER, content=text) for text in texts),
            common_pb2.Message(role=common_pb2.ROLE_ASSISTANT, content="Here is some help with that."),
        ],
    )


def dataset() -> list[common_pb2.Conversation]:
    """Three topics from many users, one conversation whose request is a script, and an astronomy
    topic from one user only: with min_distinct_users=2 its cluster is withheld."""
    items = conversations(24)
    items.append(chat("xss", "user-x", XSS, "I forgot my password and cannot log in to my account"))
    items += [chat(f"stars-{i}", "stargazer", text) for i, text in enumerate(STARS)]
    return items


async def analysed(gw: GatewayHandle) -> tuple[str, dict[str, Any]]:
    request = gateway_pb2.CreateAnalysisRequest(
        conversations=dataset(),
        options=gateway_pb2.AnalysisOptions(k=5, min_cluster_size=2, min_distinct_users=2, display_name="r"),
    )
    analysis = (await gw.stub.CreateAnalysis(request)).analysis
    updates = await gw.wait(analysis.id)
    assert updates[-1].analysis.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED
    # The results as the CLI merges them (page size 7: several pages).
    merged = gateway_pb2.GetAnalysisResultsResponse()
    token = ""
    while True:
        page = await gw.stub.GetAnalysisResults(
            gateway_pb2.GetAnalysisResultsRequest(id=analysis.id, page_size=7, page_token=token)
        )
        if not token:
            merged.CopyFrom(page)
        else:
            merged.conversations.extend(page.conversations)
        token = page.next_page_token
        if not token:
            break
    merged.next_page_token = ""
    return analysis.id, to_json(merged)


def request_of(row: dict[str, Any]) -> str:
    return next(f.get("text", "") for f in row["facets"] if f["facet"] == "request")


@pytest_asyncio.fixture(loop_scope="session")
async def withholding_clustering() -> AsyncIterator[RunningService]:
    """A clustering service that withholds the clusters failing the privacy rule (the default merges
    them into their nearest passing neighbour)."""
    from briefxai_clustering.server import build_service
    from briefxai_clustering.settings import ClusteringSettings

    settings = ClusteringSettings.load(
        **LOCAL, warm_up_map=False, compute_threads=1, merge_small_clusters=False
    )
    running = await start_service(build_service(settings))
    yield running
    await running.stop(grace=0)


async def test_report_from_the_gateway_the_cli_and_a_saved_file(
    start_gateway: GatewayFactory, withholding_clustering: RunningService, tmp_path: Path
) -> None:
    gw = await start_gateway(clustering_address=withholding_clustering.address)
    analysis_id, results = await analysed(gw)
    rows = results["conversations"]
    reported = [r for r in rows if not r["withheld"]]
    withheld = [r for r in rows if r["withheld"]]
    assert withheld, "the one-user astronomy cluster should have been withheld"
    assert int(results["withheld_conversations"]) == len(withheld)
    xss = next(r for r in rows if r["conversation_id"] == "xss")
    assert not xss["withheld"] and request_of(xss) == XSS

    # The gateway's HTTP route.
    status, body = await asyncio.to_thread(
        http_get, gw.running.http_port, f"/analyses/{analysis_id}/report", gw.bearer
    )
    assert status == 200
    served = body.decode("utf-8")
    assert served == render_report(results)

    # The CLI, as a process, from the gateway and from the analysis.json that `results` saves.
    address = gw.running.address
    out = tmp_path / "report.html"
    done = await asyncio.to_thread(
        run_cli, "report", analysis_id, "--out", str(out), "--gateway", address, data_dir=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8") == served
    done = await asyncio.to_thread(
        run_cli,
        "results",
        analysis_id,
        "--out",
        str(tmp_path / "saved"),
        "--gateway",
        address,
        data_dir=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "saved" / "analysis.json").read_text()) == results
    done = await asyncio.to_thread(
        run_cli, "report", "--from", str(tmp_path / "saved" / "analysis.json"), data_dir=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "saved" / "report.html").read_text(encoding="utf-8") == served

    # Withheld conversations: counted, never shown.
    for row in withheld:
        assert row["conversation_id"] not in served
        assert "request" not in {f["facet"] for f in row["facets"]}  # nor exported as free text
    assert XSS not in served

    # In a real browser.
    data = "JSON.parse(document.getElementById('report-data').textContent)"
    find = f"{data}.points.findIndex(p => p[3] === {json.dumps(XSS)})"
    hover = hover_point(find)
    page = await open_page(
        out.as_uri(), expressions=[COUNT_POINTS, hover], screenshot=tmp_path / "report.png"
    )
    assert page.console_errors == []
    assert page.dialogs == []
    assert page.values[COUNT_POINTS] == len(reported) == len(rows) - len(withheld)
    assert page.values[hover][0] is False and page.values[hover][3] == XSS
    assert page.screenshot is not None and page.screenshot.stat().st_size > 10_000
    # Served by the gateway, the same page loads without an error either (no favicon or other fetch).
    url = f"http://127.0.0.1:{gw.running.http_port}/analyses/{analysis_id}/report"
    page = await open_page(url, expressions=[COUNT_POINTS], headers=gw.bearer)
    assert (page.console_errors, page.dialogs, page.values[COUNT_POINTS]) == ([], [], len(reported))


async def test_report_route_errors(start_gateway: GatewayFactory, closed_address: str) -> None:
    # Clustering points at a port nobody listens on and retries go on: the analysis stays RUNNING.
    gw = await start_gateway(
        clustering_address=closed_address,
        retry_policies=retry_until_back(max_attempts=10_000, initial_delay_ms=50, max_delay_ms=100),
        circuit_breakers=every_downstream(failure_threshold=1_000_000),
    )
    port = gw.running.http_port
    status, body = await asyncio.to_thread(http_get, port, "/analyses/nope/report")
    assert status == 401 and b"UNAUTHENTICATED" in body
    status, body = await asyncio.to_thread(http_get, port, "/analyses/nope/report", gw.bearer)
    assert status == 404 and b"NOT_FOUND" in body
    request = gateway_pb2.CreateAnalysisRequest(conversations=conversations(6))
    running = (await gw.stub.CreateAnalysis(request)).analysis
    await gw.wait_until(running.id, lambda u: u.analysis.stage == gateway_pb2.STAGE_CLUSTER)
    status, body = await asyncio.to_thread(http_get, port, f"/analyses/{running.id}/report", gw.bearer)
    assert status == 409 and b"RUNNING" in body
    await gw.stub.CancelAnalysis(gateway_pb2.CancelAnalysisRequest(id=running.id))
    status, body = await asyncio.to_thread(http_get, port, f"/analyses/{running.id}/report", gw.bearer)
    assert status == 409 and b"CANCELLED" in body
    # The side port's own routes are still there.
    status, _ = await asyncio.to_thread(http_get, port, "/livez")
    assert status == 200
