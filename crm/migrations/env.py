"""Alembic environment: migrates ``crm.store.Base.metadata`` (the store's tables and the
local CRM's).

``Store.create_schema()`` passes an open connection, already inside the transaction that
holds the migration lock, as ``config.attributes["connection"]``; the migrations then run
in that transaction and the caller commits. Without one (``command.revision`` with
``alembic_config(url)``), an engine is made from ``sqlalchemy.url``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import crm.local  # noqa: F401 - registers the local CRM's tables on Base.metadata
from crm.store import Base, make_engine

target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        run_migrations(given)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url configured")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            run_migrations(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run them on a database")
run_migrations_online()
