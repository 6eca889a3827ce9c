"""A gateway store at an older Alembic revision, as a database written by an earlier release would be."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from briefxai_gateway.store import Store
from briefxai_gateway.store.engine import MIGRATIONS_DIR


def store_at(url: str, revision: str, *statements: str) -> Store:
    """A store at ``url`` migrated to ``revision`` only, with ``statements`` (SQL of that schema, such as
    rows an earlier release wrote) run in the same transaction. ``Store.migrate`` then upgrades it."""
    store = Store(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        for statement in statements:
            connection.exec_driver_sql(statement)
    return store
