from exchange import rollups as _rollups  # noqa: F401  (every write of a ledger line also adds to its rollups)
