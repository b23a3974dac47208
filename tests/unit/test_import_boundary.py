"""The pure core never imports Ray: specs, the catalog, snapshots and the allocator load without it."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

PURE = ("orchestrator.spec", "orchestrator.hardware", "orchestrator.snapshot", "orchestrator.placement",
        "orchestrator.allocator")


def test_pure_modules_do_not_import_ray():
    code = (f"import sys; import {', '.join(PURE)}; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
