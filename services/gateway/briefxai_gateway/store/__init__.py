"""The gateway's only state: analyses, raw conversations, facet values, embeddings, clusters,
assignments with map points, per-batch checkpoints and analysis leases, in SQLite (default, WAL mode)
or PostgreSQL (``postgresql://`` or ``postgresql+psycopg://``, driver psycopg 3), which several
gateways may share.

All methods are blocking and short; the async code calls them through ``in_thread``. Bulk writes use
SQLAlchemy Core ``insert()`` with executemany.

- ``engine.py``: engine creation (SQLite pragmas, the PostgreSQL driver) and Alembic migrations;
- ``codecs.py``: how facet values, messages and facet definitions are stored as text;
- ``analyses.py``, ``checkpoints.py``, ``results.py``, ``performance.py`` (the performance history),
  ``revisions.py`` (later revisions of the results, AssignConversations), ``leases.py`` (which gateway
  runs an analysis), ``users.py`` (erase and export one user's data; expired analyses for the
  retention purge), ``audit.py`` (the audit trail's records, chain head and retention checkpoints):
  the per-area repositories that :class:`Store` combines over one shared engine (``base.py``).
"""

from __future__ import annotations

from ..metrics import timed_store
from .analyses import AnalysisRepository
from .audit import AuditRepository
from .base import DuplicateRequestId, LeaseLost, StoreInconsistent
from .checkpoints import CheckpointRepository
from .codecs import decode_messages
from .engine import create_store_engine, migrate
from .keys import KeyRepository
from .leases import LeaseRepository
from .performance import PerformanceRepository
from .results import ResultRepository
from .revisions import RevisionConflict, RevisionRepository
from .users import ErasureCounts, ExpiredAnalysis, UserRepository

__all__ = [
    "DuplicateRequestId",
    "ErasureCounts",
    "ExpiredAnalysis",
    "LeaseLost",
    "RevisionConflict",
    "Store",
    "StoreInconsistent",
    "create_store_engine",
    "decode_messages",
    "migrate",
]


@timed_store({DuplicateRequestId: "ALREADY_EXISTS", RevisionConflict: "ABORTED", LeaseLost: "ABORTED"})
class Store(
    AnalysisRepository,
    CheckpointRepository,
    RevisionRepository,
    ResultRepository,
    PerformanceRepository,
    LeaseRepository,
    KeyRepository,
    UserRepository,
    AuditRepository,
):
    """Blocking data access for one tenant: analyses, checkpoints and results over one engine.

    Each public call is timed as ``briefxai_operation_duration_seconds{operation="store_<method>"}``."""
