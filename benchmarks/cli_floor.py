"""The least a submit client in Python with orch's CLI framework can cost: a typer command
that reads the job spec with PyYAML and makes three requests to the control plane with the
cluster token (as `orch submit` does: plan, package check, submit), but validates nothing,
packages nothing and queues nothing (the requests ask for things that are not there).

benchmarks/submit_latency.py runs it from the same parallel clients as `orch submit`, in the
same run, so the figure says how much of the latency under load is orch's own work and how
much any such process costs. Usage: ``cli_floor.py SPEC --control URL``.
"""

from __future__ import annotations

import typer
import yaml

from orchestrator.adapters.http import http
from orchestrator.core.errors import JobNotFound

app = typer.Typer(add_completion=False)


@app.command()
def submit(spec: str, control: str = typer.Option(..., "--control")) -> None:
    with open(spec, encoding="utf-8") as file:
        name = yaml.safe_load(file)["name"]
    for path in (f"/packages/floor-{name}", f"/packages/floor-{name}-2", f"/jobs/floor-{name}"):
        try:
            http(control, path)
        except JobNotFound:  # the answer expected: nothing of that name
            pass
    print('{"job": "none"}')


if __name__ == "__main__":
    app()
