"""How the CLI shows things: rich tables and panels, and the JSON shapes of SPEC.md."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Column, Table
from rich.text import Text

from orchestrator.client import api
from orchestrator.core import hardware, precision
from orchestrator.core.lifecycle import JobState

_S = JobState
# Keyed by the states' text, as views carry them.
STATE_STYLE = {_S.SUCCEEDED.value: "green", _S.FAILED.value: "red", _S.CANCELLED.value: "yellow",
               _S.RUNNING.value: "cyan", _S.STARTING.value: "blue", _S.QUEUED.value: "magenta",
               _S.PREEMPTED.value: "yellow"}


def _gib(value: float) -> str:
    return f"{value / hardware.GIB:.1f}GiB"


def _resources(resources: dict[str, float]) -> str:
    parts = []
    for key in sorted(resources):
        value = resources[key]
        if key.startswith(hardware.ACCELERATOR_RESOURCE_PREFIX) or key.endswith("-head"):
            continue  # markers, not amounts; the labels name the hardware
        parts.append(f"{key}={_gib(value)}" if key == hardware.MEMORY else f"{key}={value:g}")
    return " ".join(parts)


def queues_table(data: dict[str, Any]) -> Table:
    table = Table("queue", "cohort", "quota", "borrow limit", "used", "borrowed", title="queues")
    for name, queue in data["queues"].items():
        table.add_row(name, queue["cohort"] or "-", _resources(queue["quota"] or {}) or "unlimited",
                      _resources(queue["borrow"] or {}) or "-", _resources(queue["used"]) or "-",
                      _resources(queue["borrowed"]) or "-")
    return table


def accelerators_table(data: dict[str, Any]) -> Table:
    """The cluster's accelerator types with what is known of them ("?" where nothing is)."""
    table = Table("type", "family", "Ray type", "memory", "bf16 TFLOP/s", "fp32 TFLOP/s", "$/device-hour", "from",
                  title="accelerators")
    for acc in data.get("accelerators", []):
        table.add_row(acc["name"], acc["family"], acc["ray_type"], _known(acc["memory_gib"], "{:g}GiB"),
                      _known(acc["peak_bf16_tflops"]), _known(acc["peak_fp32_tflops"]),
                      _known(acc["price_per_hour"]), acc["source"])
    return table


def _known(value: float | None, form: str = "{:g}") -> str:
    return "?" if value is None else form.format(value)


def cluster_table(data: dict[str, Any]) -> Table:
    table = Table(title=f"cluster {data['name']} — dashboard {data['dashboard']}")
    for column in ("node", "hardware", "total", "free"):
        table.add_column(column)
    for node in data["nodes"]:
        accelerator = node["labels"].get(hardware.LABEL_ACCELERATOR_TYPE, "CPU")
        table.add_row(node["name"], accelerator, _resources(node["total"]), _resources(node["free"]))
    return table


def plan_table(plan: dict[str, Any]) -> Group:
    style = {"placeable": "green", "queued": "yellow", "infeasible": "red"}[plan["status"]]
    head = Table.grid(padding=(0, 2))
    head.add_row("job", plan["job"])
    head.add_row("status", Text(plan["status"], style=style))
    if plan["status"] != "infeasible":
        head.add_row("accelerator", f"{plan['accelerator']} x {_workers(plan['workers'])}")
        head.add_row("per worker", _resources(plan["per_worker"]))
        head.add_row("nodes", ", ".join(plan["nodes"]))
        cost = plan["cost_per_hour"]
        head.add_row("cost", "unknown (no list price)" if cost is None else f"${cost:.2f}/hour")
    if plan.get("why"):
        head.add_row("why", plan["why"])
    if plan.get("queue_position") is not None:
        head.add_row("queue", f"{plan['queue_position']} job(s) ahead")
    if (plan.get("estimate") or {}).get("basis"):
        head.add_row("runtime", estimate_text(plan["estimate"]))
    if plan["status"] != "infeasible" and (plan.get("estimate") or {}).get("start_in_s") is not None:
        head.add_row("eta", eta_text(plan["estimate"], _S.QUEUED, both=True))
    parts: list[Any] = [head]
    if plan["rejected"]:
        rejected = Table("rejected option", "reason", title="other options")
        for item in plan["rejected"]:
            rejected.add_row(item["option"], item["reason"])
        parts.append(rejected)
    parts += [Text(f"• {reason}") for reason in plan["reasons"]]
    return Group(*parts)


def dry_run_json(submitted: dict[str, Any]) -> dict[str, Any]:
    env = submitted["ray_job"]["runtime_env"]["env_vars"]
    # The payload repeats the spec and plan shown beside it; keep the dry run readable.
    env["ORCH_JOB"] = "<job payload: spec, plan, Ray Train settings>"
    return submitted


def _age(since: float | None) -> str:
    if not since:
        return "-"
    return _span(int(time.time() - since))


def _span(seconds: int) -> str:
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def accelerator_text(accelerator: Any) -> str:
    """A job's accelerator as the spec would write it: ``A100:1``, ``[H100:1, A100:1]``, ``any_of [...]``."""
    if isinstance(accelerator, dict):
        return " ".join(f"{key} {accelerator_text(value)}" for key, value in accelerator.items())
    if isinstance(accelerator, list):
        return f"[{', '.join(map(str, accelerator))}]"
    return str(accelerator)


def jobs_table(views: list[api.JobView]) -> Table:
    # ids are copied into other commands: never cut; the reason takes what width is left.
    columns = ("job", "state", "priority", "queue", "hardware", "age", "eta")
    table = Table(*(Column(name, no_wrap=True) for name in columns), Column("reason", ratio=1, overflow="fold"))
    for v in views:
        table.add_row(v.job, Text(v.state, style=STATE_STYLE.get(v.state, "")), str(v.priority), v.queue,
                      f"{accelerator_text(v.accelerator)} x {v.workers}", _age(v.submitted_at),
                      eta_text(v.estimate, v.state), _first_line(v.reason))
    return table


def eta_text(estimate: dict[str, Any] | None, state: str, both: bool = False) -> str:
    """When a queued job is expected to start (``both``: and to end), when a running one is
    expected to end, from the control plane's forecast of the queue; ``-`` where it is unknown,
    blank for a job that ended."""
    found = estimate or {}
    start, end = found.get("start_in_s"), found.get("end_in_s")
    if state in (_S.STARTING, _S.RUNNING):
        return "-" if end is None else f"ends in {_span(int(end))}"
    if state != _S.QUEUED:
        return ""
    if start is None:
        return "-"
    said = "starts now" if start == 0 else f"starts in {_span(int(start))}"
    return f"{said}, ends in {_span(int(end))}" if both and end is not None else said


def estimate_text(estimate: dict[str, Any]) -> str:
    """``about 45m (hint)``: the estimated running time and what it rests on."""
    return f"about {_span(int(estimate['runtime_s']))} ({estimate['basis']})"


def _workers(count: int | str) -> str:
    return f"{count} worker" if count == 1 else f"{count} workers"


def _first_line(reason: str | None) -> str:
    """A reason as one table line: its first, or a traceback's last (the error); the whole
    reason is in `orch status`."""
    lines = [line.strip() for line in (reason or "").splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    return f"... {lines[-1]}" if lines[0].startswith("Traceback") else f"{lines[0]} ..."


def _metrics_text(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "-"
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


SPARKS = "▁▂▃▄▅▆▇█"
CURVE_WIDTH = 40  # characters: longer series are averaged into this many buckets


def sparkline(values: list[float | None], width: int = CURVE_WIDTH) -> str:
    """The values as one line of bars, lowest ▁ to highest █ (all ▄ when they are equal); a
    space for a missing value (a NaN); more than ``width`` values are averaged into ``width``."""
    values = _buckets(values, width)
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, span = min(known), max(known) - min(known)
    top = len(SPARKS) - 1
    return "".join(" " if v is None else SPARKS[round((v - low) / span * top) if span else top // 2] for v in values)


def _buckets(values: list[float | None], width: int) -> list[float | None]:
    if len(values) <= width:
        return list(values)
    cuts = [len(values) * i // width for i in range(width + 1)]
    means = []
    for start, end in zip(cuts, cuts[1:]):
        known = [v for v in values[start:end] if v is not None]
        means.append(sum(known) / len(known) if known else None)
    return means


def curve_text(curve: dict[str, Any]) -> str:
    """``test_accuracy ▁▄▆▇██ 0.512 → 0.967 (min 0.512, max 0.97; 12 reports)``, and a sweep's trial."""
    known = [v for v in curve["values"] if v is not None]
    if not known:
        return f"{curve['metric']}: no finite value in {len(curve['values'])} reports"
    trial = f"  trial {curve['trial_id']}" if curve.get("trial_id") else ""
    return (f"{curve['metric']}  {sparkline(curve['values'])}  {known[0]:.4g} → {known[-1]:.4g} "
            f"(min {min(known):.4g}, max {max(known):.4g}; {len(curve['values'])} reports){trial}")


def status_panel(view: api.JobView) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_row("state", Text(view.state, style=STATE_STYLE.get(view.state, "")))
    grid.add_row("hardware", f"{accelerator_text(view.accelerator)} x {_workers(view.workers)} ({view.framework})")
    grid.add_row("precision", precision.shown(view.precision, view.framework, view.precision_applied_by))
    trials = (view.plan or {}).get("trials") if view.state in (_S.STARTING, _S.RUNNING) else None
    if trials:  # a sweep holds a slot per trial it runs at once
        slots = ", ".join(f"{slot['accelerator']} x {slot['workers']}" for slot in (view.plan, *trials))
        grid.add_row("trials", f"{1 + len(trials)} at once ({slots})")
    grid.add_row("priority", f"{view.priority} (queue {view.queue})")
    grid.add_row("restarts", f"{view.restarts} (attempt {view.attempt})")
    if (view.estimate or {}).get("basis"):
        grid.add_row("runtime", estimate_text(view.estimate))
    if eta_text(view.estimate, view.state).strip("-"):
        grid.add_row("eta", eta_text(view.estimate, view.state, both=True))
    grid.add_row("metrics", _metrics_text(view.metrics))
    if view.curve:
        grid.add_row("curve", curve_text(view.curve))
    grid.add_row("ray job", view.ray_job_id)
    if view.reason:
        grid.add_row("reason", Text(view.reason, style="red" if view.state == _S.FAILED else ""))
    for failure in view.failures:
        causes = "; ".join(f"rank {rank}: {cause}" for rank, cause in failure["causes"].items())
        grid.add_row("failure", Text(f"attempt {failure['attempt']}: {causes or 'worker group failed'}", style="yellow"))
    for requeue in (h for h in view.history if h["state"] == _S.QUEUED and h.get("reason")):
        grid.add_row("requeued", requeue["reason"])
    for worker in view.workers_usage:
        grid.add_row(f"worker {worker['pid']}", _usage_text(worker))
    grid.add_row("history", " → ".join(h["state"] for h in view.history))
    return Panel(grid, title=view.job, expand=False)


def _usage_text(worker: dict[str, Any]) -> str:
    parts = [f"{worker['role']} worker on node {worker['node_id'][:8]}"]
    if worker["cpu_percent"] is None:
        parts.append("figures not reported yet (the node's agent reports every few seconds)")
        return "  ".join(parts)
    parts.append(f"CPU {worker['cpu_percent']:.0f}%")
    if worker["rss_bytes"]:
        parts.append(f"memory {_gib(worker['rss_bytes'])}")
    for gpu in worker["gpus"]:
        parts.append(f"GPU {gpu['index']} {gpu['name']}: {gpu['utilization_percent'] or 0:.0f}%, "
                     f"{gpu['process_memory_mib'] or 0:.0f} MiB of {gpu['memory_total_mib'] or 0:.0f}")
    for tpu in worker["node_tpus"]:
        parts.append(f"node TPU {tpu['index']}: tensorcore {tpu['tensorcore_percent'] or 0:.0f}%, "
                     f"HBM {tpu['hbm_percent'] or 0:.0f}%")
    if worker["figures_age_s"] is not None:
        parts.append(f"({worker['figures_age_s']:.0f} s ago)")
    return "  ".join(parts)


def results_panel(data: dict[str, Any]) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_row("state", Text(data["state"], style=STATE_STYLE.get(data["state"], "")))
    grid.add_row("metrics", _metrics_text(data["metrics"]))
    if data.get("curve"):
        grid.add_row("curve", curve_text(data["curve"]))
    grid.add_row("checkpoint", data["checkpoint"] or "-")
    for best in data["best_checkpoints"]:
        grid.add_row("kept", f"{best['path']}  {_metrics_text(best['metrics'])}")
    if data.get("output"):
        grid.add_row("output", data["output"])
    if data.get("tensorboard"):
        grid.add_row("tensorboard", f"{data['tensorboard']}  (`orch tensorboard {data['job']}` serves it)")
    best = data.get("best_trial")
    if best:
        grid.add_row("best trial", f"{best['trial_id']}  config {_metrics_text(best['config'])}  "
                                   f"{_metrics_text(best['metrics'])}")
    for trial in data.get("trials", []):
        grid.add_row("trial", f"{trial['trial_id']} {trial['state']} on {trial['accelerator']}  "
                              f"config {_metrics_text(trial['config'])}  {_metrics_text(trial['metrics'])}  "
                              f"{sparkline(trial['curve']['values'])}")
    if data["reason"]:
        grid.add_row("reason", Text(data["reason"], style="red"))
    return Panel(grid, title=data["job"], expand=False)


def follow(job: str, address: str | None, quiet: bool = False) -> api.JobView:
    """Wait for a job, showing its state, epoch and latest metrics: live on a terminal,
    one line per change of state or epoch when piped (logs, CI)."""
    if quiet:
        return api.wait(job, address)
    from rich.console import Console

    console = Console(stderr=True, markup=False, emoji=False)  # user text (reasons, metric names) as typed
    started = time.time()
    if console.is_terminal:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            view = api.wait(job, address, on_update=lambda v: live.update(_progress(v, started)))
    else:
        shown: list[tuple] = []

        def update(v: api.JobView) -> None:
            key = (v.state, (v.metrics or {}).get("epoch"))
            if not shown or shown[-1] != key:
                shown.append(key)
                console.print(_progress(v, started))

        view = api.wait(job, address, on_update=update)
    console.print(status_panel(view))
    return view


def _progress(view: api.JobView, started: float) -> Text:
    epoch = (view.metrics or {}).get("epoch")
    return Text.assemble((f"{view.job} ", "bold"), (view.state, STATE_STYLE.get(view.state, "")),
                         f"  {int(time.time() - started)}s",
                         f"  epoch {epoch}" if epoch is not None else "",
                         f"  {_metrics_text(view.metrics)}" if view.metrics else "")


def simulation_tables(report: dict[str, Any]) -> Group:
    """`orch simulate`: the totals, then waits by class and usage by queue."""
    totals = Table.grid(padding=(0, 2))
    for label, value in [("policy", report["policy"]), ("jobs", f"{report['jobs']} ({report['rejected']} never fit)"),
                         ("makespan", f"{report['makespan_s']:,.0f} s"), ("utilization", f"{report['utilization']:.1%}"),
                         ("mean wait", f"{report['mean_wait_s']:,.1f} s"), ("mean JCT", f"{report['mean_jct_s']:,.1f} s"),
                         ("preemptions", str(report["preemptions"])), ("wall time", f"{report['wall_s']:.2f} s")]:
        totals.add_row(label, value)
    if report.get("timed_out"):
        totals.add_row("time limit hit", str(report["timed_out"]))
    eta = report.get("eta_error") or {}
    if eta.get("median_abs_s") is not None:
        totals.add_row("ETA error", f"median {eta['median_abs_s']:,.1f} s, p90 {eta['p90_abs_s']:,.1f} s "
                                    f"({eta['jobs']} jobs predicted at submit)")
    classes = Table("class", "jobs", "mean wait s", "p99 wait s", title="waits by class")
    for name, row in sorted(report["by_class"].items()):
        classes.add_row(name, str(row["jobs"]), f"{row['mean_wait_s']:,.1f}", f"{row['p99_wait_s']:,.1f}")
    queues = Table("queue", "mean usage", "most borrowed", title="usage by queue")
    for name, row in sorted(report["by_queue"].items()):
        borrowed = _resources({k: v for k, v in row.get("max_borrowed", {}).items() if v}) or "-"
        queues.add_row(name, f"{row['mean_usage']:.1%}", borrowed)
    return Group(totals, classes, queues)
