"""The time-series and relational store: one schema for SQLite and PostgreSQL/TimescaleDB."""
