"""Alembic environment of the gateway store.

The gateway runs migrations itself at startup (``store.migrate``), handing over an open connection in
``config.attributes["connection"]``. The alembic CLI works too, with an ini file that sets
``script_location = briefxai_gateway:migrations`` and ``-x url=<database URL>``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import briefxai_gateway.store.leases  # noqa: F401  (defines analysis_leases on the schema's MetaData)
from briefxai_gateway.schema import metadata
from briefxai_gateway.store.engine import create_store_engine, parse_store_url

config = context.config


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: pass -x url=... or set sqlalchemy.url")
    return url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=parse_store_url(_url()), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_store_engine(_url())
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
