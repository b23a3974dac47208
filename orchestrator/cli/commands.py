"""The `orch` command: parse, call the library API, render. Nothing else.

Ray, the allocator and the frameworks are imported inside commands, so
`orch --help` stays fast. Errors users can cause print as one message with
SPEC.md's exit code (2 bad input, 3 cluster unreachable, 1 failed); a
traceback only with --debug.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Callable, List, Optional

import typer

from orchestrator.core.lifecycle import JobState

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  help="orch: run training jobs on a Ray cluster of CPUs, GPUs and TPUs.")

Address = typer.Option(None, "--address", help="Ray dashboard URL (default: $ORCH_ADDRESS, else the local cluster); "
                       "orch's control plane is then looked for on port 8266 of the same host, "
                       "or at $ORCH_CONTROL_ADDRESS.")
Insecure = typer.Option(False, "--insecure", help="Use a cluster even though its Jobs API answers without a token "
                        "(default: $ORCH_INSECURE).")
Json = typer.Option(False, "--json", help="Print JSON for scripts.")
Debug = typer.Option(False, "--debug", help="Show tracebacks.")
PIPED_WIDTH = 200
ClusterFile = typer.Option(None, "--cluster", help="A cluster file (cluster/*.yaml).")


def _console(err: bool = False):
    from rich.console import Console

    # soft_wrap: messages stay one line each, for people and for grep. Piped
    # output is not squeezed into 80 columns: tables keep one line per job.
    # No markup or emoji codes in what users wrote (names, paths, reasons): `[/]` or `:fire:` print
    # as typed. The few styled lines of orch's own pass markup=True.
    console = Console(stderr=err, highlight=False, soft_wrap=True, markup=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return console


def escape(text: str) -> str:
    """``text`` shown as typed inside a line of orch's markup."""
    from rich.markup import escape as escape_markup

    return escape_markup(str(text))


def command(name: str | None = None) -> Callable[[Callable], Callable]:
    """Register a command whose user-caused errors become a message and an exit code."""

    def register(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            from orchestrator.core.errors import OrchError, SpecError

            debug = bool(os.environ.get("ORCH_DEBUG") or kwargs.get("debug"))
            if kwargs.get("insecure"):
                os.environ["ORCH_INSECURE"] = "1"  # read where the cluster is resolved (orchestrator.adapters.auth)
            try:
                return func(*args, **kwargs)
            except OrchError as error:
                if debug:
                    raise
                _report(error, SpecError)
                raise typer.Exit(error.exit_code) from None
            except (typer.Exit, typer.Abort):
                raise
            except KeyboardInterrupt:
                raise typer.Exit(130) from None
            except Exception as error:  # a bug in orch: say so, keep the traceback for --debug
                if debug:
                    raise
                console = _console(err=True)
                console.print("[red]internal error:[/] ", end="", markup=True)
                console.print(f"{type(error).__name__}: {error} (run again with --debug for the traceback)",
                              markup=False)
                raise typer.Exit(1) from None

        return app.command(name=name)(wrapper)

    return register


def _report(error, spec_error_type) -> None:
    console = _console(err=True)
    if isinstance(error, spec_error_type) and len(error.problems) > 1:
        console.print(f"[red]error:[/] {len(error.problems)} problems in {escape(error.source or 'the spec')}:",
                      markup=True)
        for problem in error.problems:
            console.print(f"  {problem}", markup=False)
    else:
        console.print("[red]error:[/] ", end="", markup=True)
        console.print(str(error), markup=False)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


# ---- cluster ----------------------------------------------------------------------


@command()
def up(cluster: Optional[str] = ClusterFile, json_out: bool = Json, debug: bool = Debug):
    """Start the local (or a simulated) Ray cluster, dashboard included."""
    from orchestrator.client import api

    info = api.up(cluster, progress=lambda m: _console(err=True).print(m))
    if json_out:
        return _print_json({"dashboard": info.dashboard_url, "name": info.name})
    _console().print(f"cluster [bold]{escape(info.name)}[/] is up; dashboard {info.dashboard_url} (token required: "
                     "`orch dashboard` opens it without one)", markup=True)


@command()
def down(debug: bool = Debug):
    """Stop the cluster orch started (only the processes it started)."""
    from orchestrator.client import api

    if not api.down(progress=lambda m: _console().print(m)):
        _console().print("no cluster started by orch is running")


@command()
def dashboard(address: Optional[str] = Address, insecure: bool = Insecure,
              port: Optional[int] = typer.Option(None, "--port", help="Loopback port to serve on "
                                                 "(default: a free one)."),
              print_token: bool = typer.Option(False, "--print-token", help="Print the cluster token to paste "
                                               "into the dashboard's prompt instead; serve nothing."),
              debug: bool = Debug):
    """The cluster's Ray dashboard on 127.0.0.1 through a proxy that adds the cluster token; Ctrl-C stops it."""
    from orchestrator.client import api

    if print_token:
        return typer.echo(api.dashboard_token(address))
    served = api.dashboard(address, port or 0)
    try:
        _console().print(f"dashboard {served.url} (Ray dashboard {served.upstream_url} with the cluster token; "
                         f"jobs: {served.url}#/jobs; Ctrl-C stops it)")
        served.serve_forever()
    finally:
        served.server_close()


@command()
def tensorboard(jobs: List[str] = typer.Argument(..., help="Job ids or names (a name: its latest job)."),
                port: Optional[int] = typer.Option(None, "--port", help="Loopback port to serve on "
                                                   "(default: a free one)."),
                address: Optional[str] = Address, insecure: bool = Insecure, debug: bool = Debug):
    """TensorBoard on 127.0.0.1 over the jobs' event files (each job a run, a sweep a run per trial); Ctrl-C stops it."""
    from orchestrator.client import api

    say = _console(err=True).print
    served = api.tensorboard(jobs, address, port or 0, progress=say, note=_note)
    try:
        _console().print(f"TensorBoard {served.url} (pid {served.pid}; Ctrl-C stops it)")
        served.wait()
    finally:
        served.stop()


@command("cluster")
def cluster_status(address: Optional[str] = Address, insecure: bool = Insecure, json_out: bool = Json,
                   debug: bool = Debug):
    """Nodes, their hardware, free and used resources; queues with quota, use and what they borrow."""
    from orchestrator.cli import render
    from orchestrator.client import api

    data = api.cluster_view(address)
    if json_out:
        return _print_json(data)
    tables = [render.cluster_table(data), render.queues_table(data)]
    _console().print(*tables, *([render.accelerators_table(data)] if data.get("accelerators") else []))


# ---- specs and plans ---------------------------------------------------------------


@command()
def validate(spec: str = typer.Argument(..., help="JOB.yaml"),
             set_: List[str] = typer.Option([], "--set", help="KEY=VALUE override (repeatable)."),
             cluster: Optional[str] = typer.Option(None, "--cluster", help="A cluster file whose custom "
                                                   "accelerator types the spec may name (default: the catalog's)."),
             json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts: {ok, job, ...}, or "
                                           "{ok: false, errors: [{file, line, column, field, message}]}."),
             debug: bool = Debug):
    """Check a job spec and print every error; creates nothing."""
    from orchestrator.client import api
    from orchestrator.client import submit as submitting
    from orchestrator.core.errors import SpecError
    from orchestrator.load.loopcode import precision_warnings
    from orchestrator.load.messages import problem_objects
    from orchestrator.load.spec import load_spec

    try:
        job = load_spec(spec, set_, types=api.custom_types(cluster) if cluster else {})
        own = submitting.orch_folders_in(job.working_dir)
    except SpecError as error:
        if not json_out:
            raise
        _print_json({"ok": False, "errors": problem_objects(error)})
        raise typer.Exit(error.exit_code) from None
    warnings = precision_warnings(job)  # the spec is valid; the loop would not get what it asks
    if json_out:
        dumped = job.model_dump(mode="json")
        return _print_json({"ok": True, "job": job.name, "framework": job.framework,
                            "workers": dumped["resources"]["workers"], "accelerator": dumped["resources"]["accelerator"],
                            "pip": dumped["pip"], "excludes": dumped["excludes"],
                            "notes": [submitting.left_out_note(own)] if own else [], "warnings": warnings})
    _console().print(f"[green]ok[/] {escape(spec)}: job {job.name} ({job.framework}, "
                     f"{job.resources.workers} x {job.resources.accelerator})", markup=True)
    if own:
        _console().print(escape(submitting.left_out_note(own)))
    for warning in warnings:
        _console(err=True).print(f"[yellow]warning[/]: {escape(warning)}", markup=True)


@command()
def schema(debug: bool = Debug):
    """JSON Schema of the job spec (for editors)."""
    from orchestrator.core.spec import json_schema

    _print_json(json_schema())


@command()
def plan(spec: str = typer.Argument(..., help="JOB.yaml"), cluster: Optional[str] = ClusterFile,
         address: Optional[str] = Address, insecure: bool = Insecure,
         set_: List[str] = typer.Option([], "--set", help="KEY=VALUE override (repeatable)."),
         json_out: bool = Json, debug: bool = Debug):
    """The allocator's decision, without running anything (exit 1 if infeasible)."""
    from orchestrator.cli import render
    from orchestrator.client import api
    from orchestrator.load.spec import load_spec

    # Types outside the catalog are the cluster's to judge: the plan says whether it has them.
    data = api.plan(load_spec(spec, set_, types=None), address=address, cluster_file=cluster)
    if json_out:
        _print_json(data)
    else:
        _console().print(render.plan_table(data))
    raise typer.Exit(1 if data["status"] == "infeasible" else 0)


# ---- jobs --------------------------------------------------------------------------


@command()
def submit(spec: str = typer.Argument(..., help="JOB.yaml"),
           set_: List[str] = typer.Option([], "--set", help="KEY=VALUE override (repeatable)."),
           dry_run: bool = typer.Option(False, "--dry-run", help="Print the Ray Job request; submit nothing."),
           wait: bool = typer.Option(False, "--wait", help="Follow progress; exit with the job's outcome."),
           address: Optional[str] = Address, insecure: bool = Insecure, json_out: bool = Json, debug: bool = Debug):
    """Validate, plan and enqueue a job; print its id."""
    from orchestrator.client import api

    say = (lambda m: None) if json_out else (lambda m: _console(err=True).print(m))
    submitted = api.submit(spec, address=address, overrides=set_, dry_run=dry_run, progress=say)
    if not (dry_run or wait):  # the common case imports neither rich's tables nor render: scripts submit many
        if json_out:
            return _print_json({"job": submitted["job"], "state": submitted["state"]})
        return _console().print(f"submitted [bold]{submitted['job']}[/] ({submitted['state']}, "
                                f"{submitted['plan']['accelerator']} x {submitted['plan']['workers']})", markup=True)
    from orchestrator.cli import render

    if dry_run:
        return _print_json(render.dry_run_json(submitted))
    try:
        view = render.follow(submitted["job"], address, quiet=json_out)
    except KeyboardInterrupt:  # the job is the cluster's now: say so, and how to stop it
        _console(err=True).print(f"stopped following {submitted['job']}; it goes on "
                                 f"(`orch cancel {submitted['job']}` stops it)")
        raise typer.Exit(130) from None
    if json_out:
        _print_json(view.to_json())
    raise typer.Exit(0 if view.state == JobState.SUCCEEDED else 1)


def _note(message: str) -> None:
    """A line on stderr beside what a command prints (JSON on stdout keeps its shape)."""
    _console(err=True).print(message)


@command()
def wait(jobs: List[str] = typer.Argument(..., help="Job ids or names (the latest job of that name)."),
         address: Optional[str] = Address, insecure: bool = Insecure, json_out: bool = Json, debug: bool = Debug):
    """Follow jobs until they end, as `submit --wait` does; exit 0 if every one SUCCEEDED, else 1."""
    from orchestrator.cli import render

    views = []
    for job in jobs:
        try:
            views.append(render.follow(job, address, quiet=json_out))
        except KeyboardInterrupt:  # the jobs go on: only the following stops
            _console(err=True).print(f"stopped following {job}; it goes on (`orch cancel {job}` stops it)")
            raise typer.Exit(130) from None
    if json_out:
        _print_json([view.to_json() for view in views])
    raise typer.Exit(0 if all(view.state == JobState.SUCCEEDED for view in views) else 1)


@command("list")
def list_jobs(state: List[str] = typer.Option([], "--state", help="Only jobs in this state, any case "
                                              "(repeatable: QUEUED, RUNNING, ...)."),
              queue: Optional[str] = typer.Option(None, "--queue", help="Only jobs of this queue."),
              name: Optional[str] = typer.Option(None, "--name", help="Only jobs of this name (a glob: 'digits-*')."),
              limit: Optional[int] = typer.Option(None, "--limit", min=0, help="At most this many, newest first."),
              address: Optional[str] = Address, insecure: bool = Insecure, json_out: bool = Json, debug: bool = Debug):
    """Jobs with state, priority, hardware and age, newest first."""
    from orchestrator.cli import render
    from orchestrator.client import api

    views = api.list_jobs(address, states=state, queue=queue, name=name, limit=limit, note=_note)
    if json_out:
        return _print_json([v.to_json() for v in views])
    _console().print(render.jobs_table(views))


@command()
def status(job: str = typer.Argument(..., help="Job id or name (latest job of that name)."),
           address: Optional[str] = Address, insecure: bool = Insecure, json_out: bool = Json, debug: bool = Debug):
    """One job's state, hardware, restarts and their causes, latest metrics, and workers' CPU/GPU/memory use."""
    from orchestrator.cli import render
    from orchestrator.client import api

    view = api.status(job, address, usage=True, note=_note)
    if json_out:
        return _print_json(view.to_json())
    _console().print(render.status_panel(view))


@command()
def logs(job: str = typer.Argument(...), follow: bool = typer.Option(False, "--follow", "-f"),
         tail: Optional[int] = typer.Option(None, "--tail", "-n", min=0, help="Only the last N lines "
                                            "(with --follow: of what is written already)."),
         address: Optional[str] = Address, insecure: bool = Insecure, debug: bool = Debug):
    """Driver and worker logs."""
    from orchestrator.client import api

    output = api.logs(job, address, follow=follow, tail=tail, note=_note)
    for chunk in ([output] if isinstance(output, str) else output):
        sys.stdout.write(chunk)
        sys.stdout.flush()


@command()
def cancel(jobs: List[str] = typer.Argument(..., help="Job ids or names (a name: its latest job not ended)."),
           address: Optional[str] = Address, insecure: bool = Insecure, json_out: bool = Json, debug: bool = Debug):
    """Stop queued or running jobs; every one is tried, and the exit code is 2 if any was not found."""
    from orchestrator.client import api
    from orchestrator.core.errors import JobNotFound, SpecError

    found, missing = [], []
    for job in jobs:
        try:
            found.append(api.cancel(job, address))
        except JobNotFound as error:  # the others are still cancelled; the exit code tells
            _report(error, SpecError)
            missing.append(error)
    if json_out and (found or len(jobs) > 1):
        _print_json(found[0] if len(jobs) == 1 else found)  # one job: the object, as before
    for done in [] if json_out else found:
        _console().print(f"cancelled {done['job']}" if done["cancelled"] else
                         f"{done['job']} had already ended ({done['state']}): nothing to cancel")
    if missing:
        raise typer.Exit(missing[0].exit_code)


@command()
def results(job: str = typer.Argument(...), address: Optional[str] = Address, insecure: bool = Insecure,
            json_out: bool = Json, debug: bool = Debug):
    """Final and best metrics, and checkpoints."""
    from orchestrator.cli import render
    from orchestrator.client import api

    data = api.results(job, address, note=_note)
    if json_out:
        return _print_json(data)
    _console().print(render.results_panel(data))


@command()
def serve(address: Optional[str] = typer.Option(None, "--address", help="This head's Ray dashboard URL as seen here "
                                                "(default: $ORCH_ADDRESS, else http://127.0.0.1:8265)."),
          gcs: Optional[str] = typer.Option(None, "--gcs", help="The GCS address HOST:PORT (default: read from the "
                                            "Ray dashboard's process on this machine)."),
          host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on; keep loopback and reach "
                                   "it through an SSH tunnel or kubectl port-forward."),
          port: Optional[int] = typer.Option(None, "--port", help="Port to listen on (default: 8266, where "
                                             "`--address` clients look)."),
          home: Optional[str] = typer.Option(None, "--home", help="Folder for the job table (default: $ORCH_HOME, "
                                             "else ~/.orch)."),
          storage: Optional[str] = typer.Option(None, "--storage", help="Where jobs keep checkpoints and results; "
                                                "every node must reach it (default: HOME/storage)."),
          cluster_file: Optional[str] = typer.Option(None, "--cluster-file", help="The Ray launcher YAML or "
                                                     "RayCluster the cluster was made from (autoscaler-aware plans)."),
          queues: Optional[str] = typer.Option(None, "--queues", help="A file whose queues: section (as in "
                                               "an orch cluster file) gives queues, quotas and cohorts, on any "
                                               "cluster, autoscaled or not."),
          name: Optional[str] = typer.Option(None, "--name", help="The cluster's name (default: this host's)."),
          insecure: bool = Insecure, debug: bool = Debug):
    """Run orch's control plane in the foreground on a Ray head that `orch up` did not start."""
    # The control plane is its own program (the CLI never imports it): this process becomes it.
    given = {"--address": address, "--gcs": gcs, "--host": host, "--port": port, "--home": home,
             "--storage": storage, "--cluster-file": cluster_file, "--queues": queues, "--name": name}
    argv = [part for flag, value in given.items() if value is not None for part in (flag, str(value))]
    if debug:
        os.environ["ORCH_DEBUG"] = "1"
    os.execv(sys.executable, [sys.executable, "-m", "orchestrator.control.service", "head", *argv])


@command()
def simulate(cluster: str = typer.Option(..., "--cluster", help="A cluster file with nodes and queues."),
             trace: str = typer.Option(..., "--trace", help="TRACE.jsonl: one job a line (SPEC.md section 3)."),
             policy: str = typer.Option("orch", "--policy", help="orch, or fifo (the baseline)."),
             estimates: str = typer.Option("trace", "--estimates", help="What orch is told of runtimes: "
                                           "trace (the lines' estimate_s), exact (the true runtimes) or none."),
             json_out: bool = Json, debug: bool = Debug):
    """Replay a trace through the real allocator and queue policy in simulated time (no Ray)."""
    from orchestrator.cli import render
    from orchestrator.core.errors import SpecError
    from orchestrator.core.policy.decide import POLICIES
    from orchestrator.core.simulate import ESTIMATES
    from orchestrator.core.simulate import simulate as replay
    from orchestrator.core.suggest import did_you_mean
    from orchestrator.load.cluster import read_cluster
    from orchestrator.core.hardware import by_name
    from orchestrator.load.trace import check_queues, load_trace

    if policy not in POLICIES:
        raise SpecError(f"--policy: unknown policy {policy!r}; use one of {', '.join(POLICIES)}")
    if estimates not in ESTIMATES:
        raise SpecError(f"--estimates: unknown mode {estimates!r}; use one of {', '.join(ESTIMATES)}"
                        f"{did_you_mean(estimates, list(ESTIMATES))}")
    snapshot = read_cluster(cluster)
    jobs = load_trace(trace, by_name(snapshot.custom_types()))
    check_queues(jobs, snapshot, trace)
    report = replay(snapshot, jobs, policy, estimates=estimates)
    if json_out:
        return _print_json(report)
    _console().print(render.simulation_tables(report))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
