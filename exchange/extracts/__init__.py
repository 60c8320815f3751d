"""Extracts: a grant's table built as a signed Parquet, CSV or Arrow file, and its download."""
