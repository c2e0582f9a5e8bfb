"""Which LUDB sinus recordings a four-class model calls "another rhythm": the cardiologists' other findings in each
record's header (conduction blocks, extrasystoles, pacing, ...) for the sinus records it called O against those it
called N. Reads the pieces.csv that `benchmarks/external_validation.py --mode records` wrote for each run; scores
nothing.

    python benchmarks/ludb_other_rhythm.py --ludb ../shared/data/ludb/data \\
        --pieces runs/four75_seeds/seed_7/llm/external_ludb_four_75hz_seed7/pieces.csv

Prints, per finding, its share among the sinus records called O and among those called N, and how many records of
each carry a finding that CinC 2017's "other rhythm" class holds too (an AV block, an extrasystole, pacing, a complete
bundle-branch block); writes benchmarks/results/ludb_other_rhythm.json.
"""

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path

import wfdb

SINUS = ("Sinus rhythm", "Sinus bradycardia")
# Findings, read from the header's lower-cased lines, that change the rhythm or the beats' conduction.
RHYTHM_FINDINGS = ("i degree av block", "ii degree av block", "iii degree av-block", "atrial extrasystole",
                   "ventricular extrasystole", "pacing", "complete right bundle branch block",
                   "complete left bundle branch block")


def findings(header: Path) -> set[str]:
    """The header's diagnoses other than the rhythm, each by its name before any colon."""
    comments = wfdb.rdheader(str(header.with_suffix(""))).comments
    start = next(i for i, c in enumerate(comments) if c.strip().lower().startswith("<diagnoses>")) + 1
    return {c.split(":")[0].strip().rstrip(".").lower() for c in comments[start:]
            if not c.lower().startswith("rhythm")}


def changes_rhythm(found: set[str]) -> bool:
    return any(name in f and "incomplete" not in f for f in found for name in RHYTHM_FINDINGS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ludb", type=Path, required=True, help="LUDB's folder of records (.hea/.dat)")
    parser.add_argument("--pieces", type=Path, nargs="+", required=True)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "ludb_other_rhythm.json")
    args = parser.parse_args()

    per_run = {}
    for pieces in args.pieces:
        rows = [r for r in csv.DictReader(pieces.open()) if r["rhythm"] in SINUS and r["outcome"] in ("N", "O")]
        by_outcome = {outcome: [findings(args.ludb / f"{r['record']}.hea") for r in rows if r["outcome"] == outcome]
                      for outcome in ("O", "N")}
        counts = {outcome: Counter(f for found in records for f in found) for outcome, records in by_outcome.items()}
        n = {outcome: len(records) for outcome, records in by_outcome.items()}
        table = sorted(({"finding": f, "called_o": counts["O"][f], "called_n": counts["N"][f]}
                        for f in set(counts["O"]) | set(counts["N"])),
                       key=lambda row: row["called_n"] / max(n["N"], 1) - row["called_o"] / max(n["O"], 1))
        with_rhythm_finding = {outcome: sum(map(changes_rhythm, records)) for outcome, records in by_outcome.items()}
        per_run[str(pieces)] = {"sinus_records": n, "with_a_rhythm_finding": with_rhythm_finding, "findings": table}
        print(f"\n{pieces}\nsinus records called O: {n['O']}, called N: {n['N']}; with a finding that changes the "
              f"rhythm or conduction: {with_rhythm_finding['O']} of those called O, {with_rhythm_finding['N']} of "
              f"those called N")
        print(f"{'finding':<48}{'share of O':>11}{'share of N':>11}")
        for row in table[:15]:
            print(f"{row['finding'][:47]:<48}{row['called_o'] / max(n['O'], 1):>11.2f}"
                  f"{row['called_n'] / max(n['N'], 1):>11.2f}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({"command": "python " + " ".join(sys.argv), "sinus_rhythms": SINUS,
                                        "rhythm_findings": RHYTHM_FINDINGS, "per_run": per_run}, indent=2))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
