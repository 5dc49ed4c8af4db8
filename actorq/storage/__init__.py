"""Durable broker state: the journal of a turn's changes and the SQLite store."""
