#!/usr/bin/env python3
"""CI's check of the main job's output: REPORT.md and report.json exist, and the paper's ordering (base ~ hybrid >
skip first > distilled ~ replace final, on the eps digit pair with the paper's handover) is PASS on the paper's own
measure, the Diversity Meter (Table 3's mean pairwise distance), and on mode coverage (class entropy). The report's
other verdicts are printed, not gated: digit-space L2 is known to miss (README "Offline demo"). Stdlib only.

    python3 .ci/check_demo_report.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GATED = ("Diversity Meter", "class entropy")


def main(out: Path) -> int:
    report, data = out / "REPORT.md", out / "report.json"
    missing = [str(p) for p in (report, data) if not p.is_file()]
    if missing:
        print(f"[ci] the main job wrote no {', '.join(missing)}", file=sys.stderr)
        return 1
    verdicts = json.loads(data.read_text())["verdicts"]
    for name, ok in verdicts.items():
        print(f"[ci] the paper's ordering on {name}: {'PASS' if ok else 'FAIL'}")
    failed = [name for name in GATED if verdicts.get(name) is not True]
    if failed:
        print(f"[ci] the paper's ordering: FAIL or missing on {failed}; see {report}", file=sys.stderr)
        return 1
    print(f"[ci] the main job's report {report}: the paper's ordering PASS on {', '.join(GATED)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out/ci-demo")))
