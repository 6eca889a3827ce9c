"""The store's database engine: URL to engine (SQLite pragmas, WAL; PostgreSQL through psycopg 3) and
Alembic migrations to head (one gateway at a time on PostgreSQL: several may start at once)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url

# The Alembic scripts live beside this package, in ``briefxai_gateway/migrations``.
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# The PostgreSQL advisory lock a gateway holds while it migrates (any fixed 64-bit number).
MIGRATION_LOCK = 0x6272696566786169
POSTGRESQL_EXTRA = "pip install 'briefxai-gateway[postgresql]'"


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()


def parse_store_url(url: str) -> URL:
    """``url`` parsed, with ``postgresql://`` (and the old ``postgres://``) meaning psycopg 3, the driver
    the gateway ships with (SQLAlchemy's own default for them is psycopg2)."""
    parsed = make_url(
        url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url
    )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_store_engine(url: str) -> Engine:
    """An engine for ``url``; for SQLite the file's folder is created and WAL mode is switched on."""
    parsed = parse_store_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise ValueError("the gateway store needs a SQLite file path, not an in-memory database")
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        if parsed.get_backend_name() == "postgresql":
            raise ValueError(
                f"{parsed.drivername}: the driver {exc.name} is not installed. The gateway's PostgreSQL "
                f"driver is psycopg 3 (postgresql:// or postgresql+psycopg://): {POSTGRESQL_EXTRA}"
            ) from exc
        raise


def migrate(engine: Engine) -> None:
    """Brings the schema to the newest revision with alembic's command API (config built here)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held to the end of the transaction: a second gateway waits, then finds the schema at head.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
