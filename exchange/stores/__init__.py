"""The stores the interfaces read, built per snapshot version: a DuckDB keyed store for pages and queries, a SQLite lookup store for point reads."""
