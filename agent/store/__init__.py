"""Persistence: SQLite is the only place where state lives."""
