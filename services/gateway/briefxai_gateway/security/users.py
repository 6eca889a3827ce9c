"""The data subject rights: erase a user's data (GDPR art. 17, CCPA deletion) and export it (art. 15
and 20), in the caller's tenant. No gRPC here; the SecurityService servicer and the CLI call it.

Erasure, in order:

1. the user's PENDING/RUNNING analyses are cancelled ("cancelled: it held conversations of a user whose
   data was erased") and their pipelines stopped, so no batch write lands after step 2;
2. the store deletes the user's rows in every table in one transaction (``store/users.py`` says what
   per table) and marks each analysis that held them stale;
3. the caches that could hold the user's data are dropped: the assigner's per-analysis state (members'
   facet values and user ids) for every touched analysis, and the embedding service's vector cache
   (keyed by a hash of each text, in memory: cleared whole, as the texts it was given are not kept);
   watchers of the touched analyses are woken (the progress hub holds counts only).

Erasure is idempotent: a call that failed half-way (the embedding service down at step 3) can be
repeated, and finishes the job. It leaves only the caller's audit record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from briefxai_common.errors import InvalidArgument, Unavailable
from briefxai_common.logging import get_logger

from .. import metrics
from ..concurrency import in_thread
from ..downstream import DownstreamError
from ..manager import AnalysisManager
from ..models import AnalysisState
from ..store.users import ERASED_CANCEL_REASON

log = get_logger(__name__)

MAX_USER_ID_CHARS = 256

# Drops every entry of the embedding service's cache; returns how many there were.
CacheClearer = Callable[[], Awaitable[int]]


@dataclass(frozen=True)
class ErasureOutcome:
    """What an erasure removed: rows per table (``embeddings``: vectors overwritten with zeros), the
    analyses whose results are now stale, the ones it cancelled, and the caches it cleared."""

    deleted_rows: dict[str, int]
    stale_analysis_ids: list[str]
    cancelled_analysis_ids: list[str] = field(default_factory=list)
    caches_cleared: list[str] = field(default_factory=list)


def check_user_id(user_id: str) -> str:
    """``user_id`` as given (ids are exact: no trimming), or InvalidArgument."""
    if not user_id or not user_id.strip():
        raise InvalidArgument("user_id", "must be non-empty")
    if len(user_id) > MAX_USER_ID_CHARS:
        raise InvalidArgument(
            "user_id", f"must be at most {MAX_USER_ID_CHARS} characters, got {len(user_id)}"
        )
    return user_id


class UserData:
    """Erase and export one user's data in the current tenant (``principal.current_tenant``).

    ``manager``: the gateway's analysis manager (its store, scheduler, assigner and progress hub);
    ``clear_embedding_cache``: drops the embedding service's vector cache
    (``GrpcEmbeddingClient.clear_cache``); None where there is no such cache to clear."""

    def __init__(self, manager: AnalysisManager, clear_embedding_cache: CacheClearer | None = None) -> None:
        self.manager = manager
        self.store = manager.store
        self.clear_embedding_cache = clear_embedding_cache

    async def erase(self, user_id: str) -> ErasureOutcome:
        """Deletes every row of ``user_id`` (see the module's docstring); Unavailable when the store is
        erased but the embedding service's cache could not be cleared (call again)."""
        check_user_id(user_id)
        cancelled = await self._stop_active(user_id)
        counts = await in_thread(self.store.erase_user, user_id)
        for analysis_id in counts.cancelled_analysis_ids:
            # Created or resumed meanwhile (another gateway's, or a race): the store cancelled it.
            metrics.ANALYSES_TOTAL.labels(state=AnalysisState.CANCELLED.value).inc()
            await self.manager.scheduler.withdraw(analysis_id)
            cancelled.append(analysis_id)
        for analysis_id in counts.stale_analysis_ids:
            self.manager.assigner.forget(analysis_id)
            self.manager.hub.notify(analysis_id)
        caches = ["assigner"]
        if self.clear_embedding_cache is not None:
            try:
                entries = await self.clear_embedding_cache()
            except DownstreamError as exc:
                log.warning("user_erasure_cache_not_cleared", service="embedding", error=exc.describe())
                raise Unavailable(
                    "the user's data was erased from the store, but the embedding service's cache could not "
                    f"be cleared ({exc.describe()}): call again to finish the erasure",
                    reason="EMBEDDING_CACHE_NOT_CLEARED",
                ) from exc
            caches.append("embedding")
            log.info("embedding_cache_cleared", entries=entries)
        log.info(
            "user_erased",
            analyses=len(counts.stale_analysis_ids),
            cancelled=len(cancelled),
            rows=sum(counts.deleted_rows.values()),
        )
        return ErasureOutcome(
            deleted_rows=counts.deleted_rows,
            stale_analysis_ids=counts.stale_analysis_ids,
            cancelled_analysis_ids=cancelled,
            caches_cleared=caches,
        )

    async def _stop_active(self, user_id: str) -> list[str]:
        """Cancels the user's PENDING/RUNNING analyses and waits for their pipelines to end here."""
        cancelled = []
        analyses = await in_thread(self.store.user_analyses, user_id)
        for analysis_id, state in analyses.items():
            if state.terminal:
                continue
            if await in_thread(self.store.finish, analysis_id, AnalysisState.CANCELLED, ERASED_CANCEL_REASON):
                metrics.ANALYSES_TOTAL.labels(state=AnalysisState.CANCELLED.value).inc()
                cancelled.append(analysis_id)
                log.info("analysis_cancelled", analysis_id=analysis_id, reason="user data erased")
            await self.manager.scheduler.withdraw(analysis_id)
        return cancelled

    async def export(self, user_id: str) -> dict[str, Any]:
        """Everything stored of ``user_id`` in the current tenant, JSON-able (``Store.export_user``)."""
        check_user_id(user_id)
        return await in_thread(self.store.export_user, user_id)
