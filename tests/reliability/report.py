"""README's reliability table, produced by the suite: `make soak` runs this.

Runs the reliability tests (the soak ones included) and the secrets test with
ORCH_FIGURES set, so each check appends its figure (tests/conftest.py
`record_figure`), then prints one row per check: the figure, its target, and
whether it held. Exits non-zero when a test failed or a row does not hold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUITE = ["tests/reliability", "tests/e2e/test_secrets.py"]


def main() -> int:
    figures = Path(tempfile.mkdtemp(prefix="orch-figures-")) / "figures.jsonl"
    env = {**os.environ, "ORCH_FIGURES": str(figures)}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "soak or not soak",
                            *SUITE], cwd=REPO, env=env)
    rows: dict[str, list[dict]] = defaultdict(list)
    for line in figures.read_text().splitlines() if figures.exists() else []:
        row = json.loads(line)
        rows[row["check"]].append(row)
    print("\n| check | figure | target | holds |\n|---|---|---|---|")
    for check, found in rows.items():
        values = [r["value"] for r in found]
        figure = max(values) if all(isinstance(v, (int, float)) for v in values) else values[-1]
        if len(found) > 1:
            figure = f"{figure:.3g} (worst of {len(found)})" if isinstance(figure, float) else f"{figure} (worst of {len(found)})"
        print(f"| {check} | {figure} | {found[0]['target']} | {'yes' if all(r['holds'] for r in found) else 'NO'} |")
    held = all(r["holds"] for found in rows.values() for r in found)
    return 0 if tests.returncode == 0 and held and rows else 1


if __name__ == "__main__":
    sys.exit(main())
