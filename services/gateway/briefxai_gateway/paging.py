"""Paging of ListAnalyses and GetAnalysisResults: page sizes (AIP-158) and opaque page tokens.

A token is URL-safe base64 of a small JSON object that names the method it continues (``kind``);
one this service did not issue, or issued for another method or analysis, is an InvalidArgument.
A GetAnalysisResults token also names the revision of the results its first page read, so that a
revision added meanwhile (AssignConversations) never mixes into the pages of an earlier one.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence

from briefxai_common.errors import InvalidArgument

from .models import (
    Analysis,
    AssignmentRow,
    ClusterWithFacets,
    ConversationResult,
    FacetValue,
    ResultsPage,
)
from .revisions import RevisionSummary

LIST_DEFAULT_PAGE = 20
LIST_MAX_PAGE = 100
RESULTS_DEFAULT_PAGE = 100
RESULTS_MAX_PAGE = 1000

ResultRow = tuple[int, str, AssignmentRow | None, list[FacetValue]]


def _encode_token(payload: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_token(token: str) -> dict[str, object]:
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token", "not a page token this service issued") from exc
    if not isinstance(payload, dict):
        raise InvalidArgument("page_token", "not a page token this service issued")
    return payload


def _token_int(payload: dict[str, object], key: str, default: int | None = None) -> int | None:
    """A non-negative integer the store can hold (SQLite's signed 64 bits), or None when it is not one;
    JSON ``true`` is not an integer here, although Python's bool is one."""
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        return None
    return value


def _page_size(requested: int, default: int, maximum: int) -> int:
    """0 means the default; values above the maximum are lowered to it (AIP-158)."""
    return default if requested <= 0 else min(requested, maximum)


def list_window(page_size: int, page_token: str) -> tuple[int, int | None]:
    """(page size, seq to continue before or None for the first page) of a ListAnalyses request."""
    size = _page_size(page_size, LIST_DEFAULT_PAGE, LIST_MAX_PAGE)
    if not page_token:
        return size, None
    payload = _decode_token(page_token)
    seq = _token_int(payload, "before")
    if payload.get("kind") != "list" or seq is None:
        raise InvalidArgument("page_token", "not a page token of ListAnalyses")
    return size, seq


def list_next_token(next_seq: int | None) -> str:
    """The token of the page after the one that ended before ``next_seq``; "" on the last page."""
    return _encode_token({"kind": "list", "before": next_seq}) if next_seq is not None else ""


def results_cursor(analysis: Analysis, page_token: str) -> tuple[int, int | None]:
    """(offset, revision) a GetAnalysisResults page token continues; (0, None) without a token. A token
    issued before revisions existed continues revision 0."""
    if not page_token:
        return 0, None
    payload = _decode_token(page_token)
    offset = _token_int(payload, "offset")
    revision = _token_int(payload, "revision", 0)
    if (
        payload.get("kind") != "results"
        or payload.get("id") != analysis.id
        or offset is None
        or revision is None
    ):
        raise InvalidArgument("page_token", "not a page token of GetAnalysisResults for this analysis")
    return offset, revision


def results_window(
    analysis: Analysis, page_size: int, page_token: str, total: int | None = None
) -> tuple[int, int]:
    """The ordinals [start, end) a GetAnalysisResults request for ``analysis`` asks for, of ``total``
    conversations (default: the analysis's own)."""
    size = _page_size(page_size, RESULTS_DEFAULT_PAGE, RESULTS_MAX_PAGE)
    total = analysis.conversation_count if total is None else total
    start, _ = results_cursor(analysis, page_token)
    if not 0 <= start <= total:
        raise InvalidArgument("page_token", "page token out of range")
    return start, min(total, start + size)


def results_page(
    analysis: Analysis,
    clusters: list[ClusterWithFacets],
    rows: Sequence[ResultRow],
    end: int,
    *,
    added: Sequence[ConversationResult] = (),
    summary: RevisionSummary | None = None,
) -> ResultsPage:
    """One page of results: the stored ``rows`` of the analysis's own conversations and the ``added``
    ones after them, up to ordinal ``end``, with the next page's token. ``summary``: the revision read
    (None: revision 0)."""
    if summary is None:
        summary = RevisionSummary(0, analysis.conversation_count, analysis.withheld_count, 0)
    conversations = [
        ConversationResult(
            conversation_id=conversation_id,
            facets=facets,
            cluster_id=row.cluster_id if row is not None else "",
            withheld=row.withheld if row is not None else True,
            point=(row.x, row.y) if row is not None and row.x is not None and row.y is not None else None,
        )
        for _, conversation_id, row, facets in rows
    ]
    conversations.extend(added)
    token = (
        _encode_token({"kind": "results", "id": analysis.id, "offset": end, "revision": summary.revision})
        if end < summary.total
        else ""
    )
    return ResultsPage(
        analysis=analysis,
        clusters=clusters,
        conversations=conversations,
        next_page_token=token,
        total_conversations=summary.total,
        withheld_conversations=summary.withheld,
        k=analysis.k,
        k_rule=analysis.k_rule,
        revision=summary.revision,
        unassigned_conversations=summary.unassigned,
    )
