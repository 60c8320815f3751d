"""Where extract files live."""

from __future__ import annotations

from pathlib import Path


def extract_folder(data_dir: Path) -> Path:
    return data_dir / "extracts"
