"""What ``write_report`` checks before it reads or writes anything: that the rows of the run folder
belong to the study its ``study.json`` records, and that the report's files may be written."""

from __future__ import annotations

import json
from pathlib import Path

from goldenlayers.errors import GoldenLayersError
from goldenlayers.files.outputs import OutputPathError, check_output_folder, file_is_ours
from goldenlayers.study.store import MANIFEST, read_manifest

REPORT_FILES = ("report.md", "report.html")
FIGURES = "figures"


def check_rows_match_study(run_dir: str | Path) -> None:
    """Refuse a row whose model or seed differ from ``study.json`` (say, appended from another
    run): it would change the tables silently. Names the file and the line."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    expected = {"model": manifest.get("model"), "seed": manifest.get("fixed", {}).get("seed")}
    for path in sorted(run_dir.glob("*.jsonl")):
        for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a torn or bad line: the results reader names it
            if not isinstance(record, dict):
                continue
            for name, value in expected.items():
                if value is not None and name in record and record[name] != value:
                    raise GoldenLayersError(
                        f"{path}: line {number} has {name} {record[name]!r}, but {run_dir / MANIFEST} "
                        f"records {name} {value!r} (a row from another run?); move the row to a "
                        f"run folder of its own")


def figure_files(out: Path) -> list[Path]:
    """The files in the report's figures folder (an earlier report's, or someone else's)."""
    folder = out / FIGURES
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def check_report_out(run_dir: str | Path, out: str | Path, overwrite: bool,
                     names: tuple[str, ...] = REPORT_FILES) -> Path:
    """Refuse, before any work, a report folder holding a file of the report's names that
    goldenlayers did not write (unless ``overwrite``). A study's run folder is ours throughout:
    its report files were written by an earlier ``report``."""
    out = Path(out).expanduser()
    check_output_folder(out, option="--out", overwrite=True)  # a file, or not writable
    if overwrite or run_folder_is_ours(run_dir, out):
        return out
    paths = [out / name for name in names] + figure_files(out)
    foreign = [str(p.relative_to(out)) for p in paths if p.exists() and not file_is_ours(p)]
    if foreign:
        raise OutputPathError(f"--out {out}: holds {', '.join(foreign[:5])}, which goldenlayers did "
                              f"not write (or which changed since); choose another folder, or pass "
                              f"--overwrite")
    return out


def run_folder_is_ours(run_dir: str | Path, out: Path) -> bool:
    """``out`` is the study's own run folder (or a campaign's folder of them): every report file
    there was written by goldenlayers, before or after files were marked as ours."""
    return (out / MANIFEST).is_file() or Path(run_dir).resolve() == out.resolve()
