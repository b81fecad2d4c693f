"""alembic environment: migrations run on the connection store_svc hands over (db.upgrade_schema).

Without one (the alembic command line, e.g. `alembic revision`), a synchronous engine is made from
`sqlalchemy.url`; give it a sync driver URL (sqlite:///..., postgresql+psycopg://...).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from store_svc.db import metadata


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.connect() as own_connection:
        run_migrations(own_connection)
    engine.dispose()
