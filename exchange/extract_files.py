"""Where extract files live, and which extracts held a given key (for the citizen's access log)."""

from __future__ import annotations

from pathlib import Path

import duckdb


def extract_folder(data_dir: Path) -> Path:
    return data_dir / "extracts"


def keys_path(data_dir: Path, extract_id: str) -> Path:
    return extract_folder(data_dir) / f".{extract_id}.keys.parquet"


def extracts_holding(data_dir: Path, extract_ids: list[str], key: str) -> set[str]:
    """Which of these extracts held a row with ``key``."""
    files = {extract_id: keys_path(data_dir, extract_id) for extract_id in extract_ids}
    present = {extract_id: path for extract_id, path in files.items() if path.exists()}
    held = set()
    connection = duckdb.connect()
    try:
        for extract_id, path in present.items():
            if connection.execute("SELECT 1 FROM read_parquet(?) WHERE key = ? LIMIT 1", [str(path), key]).fetchone():
                held.add(extract_id)
    finally:
        connection.close()
    return held
