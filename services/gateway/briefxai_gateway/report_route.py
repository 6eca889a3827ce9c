"""``GET /analyses/{id}/report`` on the gateway's HTTP side port: the analysis's self-contained HTML
report (:mod:`briefxai_report`), from the same JSON the CLI saves as ``analysis.json``: every page of
GetAnalysisResults as the servicer builds it, merged, through ``json_format.MessageToDict`` with the
CLI's options.

200 text/html; 404 for an unknown analysis (or another tenant's); 409 while it has not SUCCEEDED (or when
it failed or was cancelled: there are no results); 400 for an empty id; 503 while the gateway is
starting. Like the gRPC API it needs ``Authorization: Bearer <API key or JWT>`` of a viewer at least:
401 without a valid one, 403 for a role without the right; a read is recorded in the audit trail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from aiohttp import web
from google.protobuf import json_format

from briefxai_common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unauthenticated,
    Unavailable,
)
from briefxai_report import render_report

from .concurrency import in_thread
from .convert import results_page_to_pb
from .manager import AnalysisManager
from .models import ConversationResult, ResultsPage
from .paging import RESULTS_MAX_PAGE
from .security.guard import CallFacts, Guard, Outcome
from .security.permissions import REPORT
from .security.principal import bind_principal

ROUTE = "/analyses/{id}/report"
# The domain errors the route answers with an HTTP status (anything else is a 500).
STATUS: dict[type[ServiceError], int] = {
    Unauthenticated: 401,
    PermissionDenied: 403,
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


def report_routes(manager: Callable[[], AnalysisManager], guard: Callable[[], Guard]) -> list[web.RouteDef]:
    """The report route for ``Service.http_routes``; ``manager()`` and ``guard()`` raise Unavailable while
    the gateway starts."""

    async def report(request: web.Request) -> web.Response:
        call = CallFacts(rpc=f"http GET {ROUTE}", peer=request.remote or "")
        try:
            principal = await guard().admit(request.headers.get("Authorization"), REPORT, call)
        except tuple(STATUS) as error:
            return _error_response(error)
        bind_principal(principal)
        outcome = Outcome(resource=f"analyses/{request.match_info['id']}")
        try:
            page = await all_results(manager(), request.match_info["id"])
        except tuple(STATUS) as error:
            outcome.status_code = error.code_name
            return _error_response(error)
        finally:
            await guard().finished(principal, REPORT, call, outcome)
        body = await in_thread(_render, page)
        return web.Response(
            text=body,
            content_type="text/html",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
        )

    return [web.get(ROUTE, report)]


def _error_response(error: ServiceError) -> web.Response:
    status = next(code for kind, code in STATUS.items() if isinstance(error, kind))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.Response(status=status, text=f"{error.code_name}: {error}\n", headers=headers)
