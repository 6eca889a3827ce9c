"""``GET /analyses/{id}/report`` on the gateway's HTTP side port: the analysis's self-contained HTML
report (:mod:`briefxai_report`), from the same JSON the CLI saves as ``analysis.json``: every page of
GetAnalysisResults as the servicer builds it, merged, through ``json_format.MessageToDict`` with the
CLI's options.

200 text/html; 404 for an unknown analysis; 409 while it has not SUCCEEDED (or when it failed or was
cancelled: there are no results); 400 for an empty id; 503 while the gateway is starting. Authorization
applies here once the gateway has it (issue 13); until then, whoever reaches the HTTP port can read
every report, as with the gRPC port.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from aiohttp import web
from google.protobuf import json_format

from briefxai_common.errors import FailedPrecondition, InvalidArgument, NotFound, ServiceError, Unavailable
from briefxai_report import render_report

from .concurrency import in_thread
from .convert import results_page_to_pb
from .manager import AnalysisManager
from .models import ConversationResult, ResultsPage
from .paging import RESULTS_MAX_PAGE

ROUTE = "/analyses/{id}/report"
# The domain errors the route answers with an HTTP status (anything else is a 500).
STATUS: dict[type[ServiceError], int] = {
    NotFound: 404,
    FailedPrecondition: 409,
    InvalidArgument: 400,
    Unavailable: 503,
}


async def all_results(manager: AnalysisManager, analysis_id: str) -> ResultsPage:
    """Every page of the analysis's results as one page (clusters come with the first)."""
    first = await manager.results(analysis_id, RESULTS_MAX_PAGE, "")
    conversations: list[ConversationResult] = list(first.conversations)
    token = first.next_page_token
    while token:
        page = await manager.results(analysis_id, RESULTS_MAX_PAGE, token)
        conversations.extend(page.conversations)
        token = page.next_page_token
    return dataclasses.replace(first, conversations=conversations, next_page_token="")


def results_json(page: ResultsPage) -> dict[str, Any]:
    """The results as the CLI writes them (``briefxai_cli.client.to_json``)."""
    return json_format.MessageToDict(
        results_page_to_pb(page), preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _render(page: ResultsPage) -> str:
    return render_report(results_json(page))


def report_routes(manager: Callable[[], AnalysisManager]) -> list[web.RouteDef]:
    """The report route for ``Service.http_routes``; ``manager()`` raises Unavailable while starting."""

    async def report(request: web.Request) -> web.Response:
        try:
            page = await all_results(manager(), request.match_info["id"])
        except tuple(STATUS) as error:
            status = next(code for kind, code in STATUS.items() if isinstance(error, kind))
            return web.Response(status=status, text=f"{error.code_name}: {error}\n")
        body = await in_thread(_render, page)
        return web.Response(
            text=body,
            content_type="text/html",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
        )

    return [web.get(ROUTE, report)]
