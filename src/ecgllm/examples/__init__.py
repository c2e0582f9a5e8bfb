"""Bundled example recordings (CinC 2017, ODC-By; see ATTRIBUTION.md) for the page and a first run."""

import csv
from pathlib import Path

FOLDER = Path(__file__).parent


def example_records() -> dict[str, dict]:
    """name -> {"path": the .mat file, "label": "N" or "A"}."""
    with (FOLDER / "labels.csv").open(newline="") as handle:
        return {row["record"]: {"path": FOLDER / f"{row['record']}.mat", "label": row["label"]}
                for row in csv.DictReader(handle)}


def example_paths() -> list[Path]:
    """The examples as files to diagnose: each record's WFDB header (its .mat beside it)."""
    return [e["path"].with_suffix(".hea") for e in example_records().values()]
