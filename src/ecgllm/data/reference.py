"""Reading CinC 2017 `REFERENCE.csv`: `record,label` lines, with or without a header, CRLF or LF."""

import csv
from dataclasses import dataclass, field
from pathlib import Path

from ecgllm.data.labels import CINC_LABELS
from ecgllm.errors import DataFolderError

_HEADER_WORDS = {"record", "recording", "name", "id"}


@dataclass
class Reference:
    labels: dict[str, str]  # record id -> label, in file order
    problems: dict[str, str] = field(default_factory=dict)  # record id (or line) -> reason


def read_reference(path: str | Path) -> Reference:
    path = Path(path)
    if not path.is_file():
        raise DataFolderError(f"{path}: no REFERENCE.csv (every CinC 2017 folder has one: record,label per line)")
    labels: dict[str, str] = {}
    problems: dict[str, str] = {}
    # newline="" lets csv handle CRLF and LF alike.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if line_no == 1 and cells[0].lower() in _HEADER_WORDS:
                continue
            if len(cells) < 2 or not cells[0]:
                problems[f"{path.name}:{line_no}"] = f"malformed line {row!r}; expected record,label"
                continue
            record, label = cells[0], cells[1]
            if label not in CINC_LABELS:
                problems[record] = f"unknown label {label!r}; expected one of {', '.join(CINC_LABELS)}"
            elif record in labels:
                problems[record] = f"listed twice in {path.name}"
            else:
                labels[record] = label
    return Reference(labels=labels, problems=problems)
