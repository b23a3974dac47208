"""A screenshot of the Ray dashboard's Jobs page through `orch dashboard`, in headless Chromium.

Shows what a user sees (issue 23): each orch job a row with the orch name in the Name column,
a requeued job's attempts as rows named ``name (attempt N)``, and no token prompt. Run it where
an orch cluster runs jobs (it starts nothing but `orch dashboard` and Chromium):

    orch up
    orch submit jobs/digits/torch-mlp.yaml --wait
    python docs/dashboard_screenshot.py --out dashboard-jobs.png      # [--address URL]

It starts `orch dashboard` (the orch beside this Python), reads the orch jobs' names from the
Jobs API through it (``GET /api/jobs/``, as the page does), renders ``<url>#/jobs`` (Ray's
dashboard routes in the URL's fragment) into the PNG, then renders it again as HTML to check
that every name is on the page. Chromium runs with virtual time (``--virtual-time-budget``):
the page fetches its jobs after it loads, and virtual time lets it finish before the shot.
Exit 0 when the names are on the page, 1 when some are not (or there are no orch jobs),
`orch dashboard`'s own code when it did not start (3: no token the cluster takes).
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Iterator

ORCH = str(Path(sys.executable).with_name("orch"))
URL = re.compile(r"http://127\.0\.0\.1:\d+/")
PAGE_BUDGET_MS = 15_000  # virtual time for the page to fetch and draw its jobs
CHROMIUM_TIMEOUT_S = 120
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,900", f"--virtual-time-budget={PAGE_BUDGET_MS}"]


class DashboardDidNotStart(Exception):
    def __init__(self, code: int, stderr: str):
        super().__init__(stderr.strip() or f"`orch dashboard` exited {code}")
        self.code = code


@contextlib.contextmanager
def orch_dashboard(address: str | None) -> Iterator[str]:
    """`orch dashboard` running, its URL; stopped with Ctrl-C's signal at the end."""
    command = [ORCH, "dashboard", *(["--address", address] if address else [])]
    running = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        found = URL.search(running.stdout.readline())
        if not found:
            running.wait(timeout=30)
            raise DashboardDidNotStart(running.returncode or 1, running.stderr.read())
        yield found.group(0)
    finally:
        if running.poll() is None:
            running.send_signal(signal.SIGINT)
            running.wait(timeout=30)


def job_names(url: str) -> list[str]:
    """The names the Jobs page should show: each orch job's ``job_name``, read through the proxy."""
    with urllib.request.urlopen(f"{url}api/jobs/", timeout=30) as reply:
        rows = json.loads(reply.read())
    return sorted({row["metadata"]["job_name"] for row in rows
                   if (row.get("metadata") or {}).get("orch_job") and row["metadata"].get("job_name")})


def chromium(binary: str, page: str, *flags: str) -> str:
    """Run headless Chromium on ``page`` with a throwaway profile; its stdout."""
    with tempfile.TemporaryDirectory(prefix="orch-chromium-") as profile:
        done = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *flags, page],
                              capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"{binary} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", help="the cluster's dashboard URL (default: as `orch dashboard`)")
    parser.add_argument("--out", default="dashboard-jobs.png", help="where the PNG goes")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    try:
        with orch_dashboard(args.address) as url:
            names = job_names(url)
            chromium(args.chromium, f"{url}#/jobs", f"--screenshot={out}")
            page = html.unescape(chromium(args.chromium, f"{url}#/jobs", "--dump-dom"))
    except DashboardDidNotStart as error:
        print(f"orch dashboard did not start: {error}", file=sys.stderr)
        return error.code
    missing = [name for name in names if name not in page]
    print(f"{out}: the Jobs page through {url}; orch job names {names}, not on the page: {missing or 'none'}")
    if not names:
        print("no orch jobs on this cluster: submit one first (orch submit jobs/digits/torch-mlp.yaml --wait)",
              file=sys.stderr)
    return 0 if names and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
