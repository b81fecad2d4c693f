"""Persistence of trades, order states and snapshots (SQLite by default, PostgreSQL)."""
