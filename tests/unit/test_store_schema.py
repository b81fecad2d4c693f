"""The alembic migrations build exactly the tables store_svc.db describes, and rerun as no-ops."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from store_svc.db import create_db_engine, metadata, upgrade_schema


async def test_migrated_schema_matches_the_table_definitions(tmp_path: Path):
    engine = create_db_engine(f"sqlite+aiosqlite:///{tmp_path / 'var' / 'store.db'}")
    try:
        await upgrade_schema(engine)
        await upgrade_schema(engine)
        async with engine.connect() as conn:
            differences = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
            journal_mode = await conn.exec_driver_sql("PRAGMA journal_mode")
            assert journal_mode.scalar() == "wal"
    finally:
        await engine.dispose()
    assert differences == []
    assert set(tables) == {*metadata.tables, "alembic_version"}
