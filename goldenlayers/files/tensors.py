"""Why a safetensors file (a cached covariance, a downloaded or saved model) is damaged, read from its
header alone."""

from __future__ import annotations

import json
from pathlib import Path


def safetensors_problem(path: str | Path) -> str | None:
    """Why a safetensors file is damaged (a header that does not parse, a size that is not the one
    its header says: truncated or padded), or None when it looks whole. Reads only the header."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            prefix = file.read(8)
            if len(prefix) < 8:
                return f"{path.name} is {size} bytes, too short for a safetensors header"
            length = int.from_bytes(prefix, "little")
            if length > size - 8:
                return f"{path.name}: its header claims {length:,} bytes, the file has {size:,}"
            header = json.loads(file.read(length))
        ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        return f"{path.name}: unreadable header ({error})"
    expected = 8 + length + max(ends, default=0)
    if expected != size:
        return f"{path.name} is {size:,} bytes, its header says {expected:,} (truncated?)"
    return None
