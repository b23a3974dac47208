"""The control plane as a process on the head node: `python -m orchestrator.control.service`.

`orch up` starts it beside the Ray head (its own process group, recorded in
cluster.json); on a head orch did not start, `orch serve` execs it in the
foreground (`python -m orchestrator.control.service head ...`, ``serve_head``),
finding the GCS from the Ray dashboard's process.
It serves a small JSON API on 127.0.0.1 (``--host`` to change that) that
requires the cluster's Ray token, and runs `Control.run_forever`. All state
is in SQLite under ``--home``: kill it at any moment and start it again.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import socket
import sys
import threading
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import unquote

from orchestrator.adapters import auth
from orchestrator.adapters.job_table import DB_NAME, JobRow, row_json
from orchestrator.control.store import Store
from orchestrator.core.errors import ClusterUnavailable, JobNotFound, OrchError, SpecError, message_lines
from orchestrator.load.spec import check_sent

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_DASHBOARD = "http://127.0.0.1:8265"  # `ray start --head`'s dashboard, as seen on the head
DRAIN_BYTES = 128 << 20  # a refused upload up to this size is read whole before the answer


def jobs_json(control) -> list[dict[str, Any]]:
    """GET /jobs: every job with the summary kept of its ended attempts, its runtime estimate and
    ETA (what `orch list` shows)."""
    return control.eta_rows(control.store.jobs_json())


def job_json(control, row: JobRow) -> dict[str, Any]:
    """GET /jobs/X: one job with its attempts' kept events, its runtime estimate and ETA (`orch status`)."""
    [found] = control.eta_rows([control.store.job_json(row)])
    return found


class Handler(BaseHTTPRequestHandler):
    control = None  # set on the subclass made by `serve`
    server_version = "orch-control"
    timeout = 60  # seconds a client may stall mid-request before its thread (and partial upload) is let go

    def log_message(self, *args) -> None:  # keep the service log for the loop, not every GET
        pass

    def _reply(self, code: int, body: Any) -> None:
        data = json.dumps(body, default=str).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        secret = auth.token()
        if not secret:  # the token file went away: nobody is let in (not "Bearer " with nothing after it)
            return False
        # As bytes: compare_digest refuses str with non-ASCII characters (a header may carry any).
        return hmac.compare_digest(self.headers.get("Authorization", "").encode(), f"Bearer {secret}".encode())

    def _handle(self, method: str) -> None:
        if not self._authorized():
            self._drain()
            return self._reply(401, {"error": "missing or wrong token"})
        parts = [unquote(p) for p in self.path.strip("/").split("/")]
        try:
            code, body = self._route(method, parts)
        except OrchError as error:
            code, body = http_status(error), {"error": str(error), "type": type(error).__name__,
                                              "reasons": getattr(error, "reasons", None)}
        except Exception as error:  # never let one request kill the service
            traceback.print_exc()
            code, body = 500, {"error": f"{type(error).__name__}: {error}"}
        self._reply(code, body)

    def _drain(self) -> None:
        """Read what is left of a refused upload (up to DRAIN_BYTES), so the client's send
        completes and it reads the answer instead of a reset connection."""
        left = min(self._length(), DRAIN_BYTES)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                return
            left -= len(chunk)

    def _length(self) -> int:
        try:
            return max(int(self.headers.get("Content-Length") or 0), 0)
        except ValueError:
            return 0

    def _body(self) -> Any:
        return json.loads(self.rfile.read(self._length()))

    def _route(self, method: str, parts: list[str]) -> tuple[int, Any]:
        control = self.control
        if method == "GET" and parts == ["health"]:
            return 200, {"ok": True}
        if method == "GET" and parts == ["cluster"]:
            return 200, control.cluster()
        if method == "GET" and parts == ["jobs"]:
            return 200, jobs_json(control)
        if method == "GET" and len(parts) == 2 and parts[0] == "jobs":
            row = control._find(parts[1])
            return 200, job_json(control, row)
        if method == "GET" and len(parts) == 3 and parts[0] == "jobs" and parts[2] == "log":
            row = control._find(parts[1])
            return 200, control.store.log_json(row)
        if method == "POST" and parts == ["jobs"]:
            row, created = control.submit(self._body())
            return (201 if created else 200), row_json(row)
        if method == "POST" and parts == ["dry-run"]:
            return 200, control.dry_run(self._body())
        if method == "POST" and parts == ["plan"]:
            body = self._body()
            return 200, control.plan(body["spec"], eta=bool(body.get("eta")))
        if method == "POST" and parts == ["specs"]:  # `orch submit`: the spec as its client read it
            return 200, sent_plan(control, self._body())
        if method == "GET" and len(parts) == 2 and parts[0] == "packages":
            found = control.packages.path(parts[1])
            return (200, {"package": parts[1]}) if found else (404, {"error": f"no package {parts[1]}"})
        if method == "PUT" and len(parts) == 2 and parts[0] == "packages":
            try:
                control.packages.keep(parts[1], self.rfile, self._length())
            except ValueError as error:  # not a package name, empty or too big, a short upload
                self._drain()
                return 422, {"error": str(error)}
            return 201, {"package": parts[1]}
        if method == "POST" and len(parts) == 3 and parts[0] == "jobs" and parts[2] == "cancel":
            row, ended = control.cancel(parts[1])
            return 200, {**row_json(row), "cancelled": ended}
        return 404, {"error": f"no route {method} /{'/'.join(parts)}"}

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


def sent_plan(control, body: dict[str, Any]) -> dict[str, Any]:
    """A spec `orch submit` read and sent as text, checked here against the models (loaded
    already, unlike in each client): their problems, for the client to list with those of its
    files; else the valid spec's JSON and its plan."""
    text, source, overrides = body["text"], body.get("source", "<string>"), body.get("overrides", [])
    if not (isinstance(text, str) and isinstance(source, str) and isinstance(overrides, list)
            and all(isinstance(item, str) for item in overrides)):
        raise SpecError("a spec is sent as its text, the file it came from and the --set options, all text")
    spec, problems = check_sent(text, source, overrides)
    if spec is None:
        return {"problems": problems}
    return {"spec": spec.model_dump(mode="json"), **control.plan(spec)}


def http_status(error: OrchError) -> int:
    """The status that client.http turns back into the same kind of error: 404 a missing job,
    422 other bad input (exit 2), 503 the cluster (exit 3)."""
    if isinstance(error, JobNotFound):
        return 404
    return {2: 422, 3: 503}.get(error.exit_code, 500)


def serve(control, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"control": control})
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6}) \
        if ":" in host else ThreadingHTTPServer
    server = server_class((host, port), handler)
    server.daemon_threads = True
    return server


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from orchestrator.adapters.cluster import CONTROL_PORT

    parser = argparse.ArgumentParser(description="orch control plane")
    parser.add_argument("--home", required=True)
    parser.add_argument("--dashboard", required=True)
    parser.add_argument("--gcs", required=True)
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default 127.0.0.1: reach it through a tunnel)")
    parser.add_argument("--port", type=int, default=CONTROL_PORT)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--cluster-file")
    parser.add_argument("--queues", help="a file with a queues: section (or a whole orch cluster file)")
    parser.add_argument("--name", default="local")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, say: Callable[[str], None] = lambda m: print(m, flush=True)) -> None:
    """Serve the control plane until the process ends; OrchError (exit 3) if it cannot start."""
    _require_token()
    auth.apply_to_environ()

    from orchestrator.adapters import cluster
    from orchestrator.adapters.jobs import JobsClient
    from orchestrator.control.loop import Control
    from orchestrator.load import launcher
    from orchestrator.load.cluster import accelerators_of, load_queues_file, queues_of

    if args.queues:
        load_queues_file(args.queues)  # a bad file stops the start, with its line and column
    Path(args.home).mkdir(parents=True, exist_ok=True)
    held = cluster.hold_control_lock(Path(args.home), wait_s=5.0)
    if held is None:
        raise ClusterUnavailable(f"another orch control plane serves {args.home}; stop it, or give this one "
                                 "another --home")
    # A Ray launcher YAML or KubeRay RayCluster describes a cluster the autoscaler grows: plan
    # against it at its largest. Such a config has no orch queues: `--queues` gives them, on
    # any cluster. An orch cluster file lists nodes that all exist, its queues and custom types.
    max_scale = launcher.autoscaling_snapshot(args.cluster_file) if args.cluster_file else None
    info = cluster.ClusterInfo(dashboard_url=args.dashboard, gcs_address=args.gcs, name=args.name,
                               cluster_file=None if max_scale else args.cluster_file, storage=args.storage)
    queues_file = args.queues or info.cluster_file
    control = Control(Store(Path(args.home) / DB_NAME), JobsClient(info),
                      lambda: cluster.live_snapshot(info, queues_of(queues_file), accelerators_of(info.cluster_file)),
                      args.storage, max_scale_source=(lambda: max_scale) if max_scale else None)
    try:
        server = serve(control, args.port, args.host)
    except OSError as error:
        raise ClusterUnavailable(f"the control plane cannot listen on {args.host}:{args.port}: "
                                 f"{error.strerror or error}; choose another --port") from None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    say(f"orch control plane on {args.host}:{args.port}")
    if args.host not in LOOPBACK:
        say(f"warning: listening on {args.host}, not loopback: anyone who can reach it and holds the token "
            "can run jobs; prefer 127.0.0.1 and an SSH tunnel or kubectl port-forward")
    control.run_forever()


def _require_token() -> None:
    if not auth.token():
        raise ClusterUnavailable(f"the control plane answers only requests with the cluster's token, and there is "
                                 f"none here: RAY_AUTH_TOKEN is unset and {auth.token_path()} does not exist. Set "
                                 "RAY_AUTH_TOKEN_PATH to the cluster's token file (or RAY_AUTH_TOKEN).")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [HEAD]:
        return main_head(argv[1:])
    args = parse_args(argv)
    try:
        run(args)
    except OrchError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(error.exit_code) from None


# ---- `orch serve`: the control plane on a head orch did not start -------------------

HEAD = "head"  # the first argument of `orch serve`'s command line here


def main_head(argv: list[str]) -> None:
    """`orch serve`, which execs this with its options: the CLI's ways with errors, so that users
    see what any orch command shows (a message and SPEC.md's exit code; the traceback with
    --debug, passed as ORCH_DEBUG)."""
    args = _head_args(argv)
    debug = bool(os.environ.get("ORCH_DEBUG"))
    try:
        serve_head(**vars(args), say=_say)
    except OrchError as error:
        if debug:
            raise
        for line in message_lines(error):
            _say(line)
        raise SystemExit(error.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as error:  # a bug in orch: say so, keep the traceback for --debug
        if debug:
            raise
        _say(f"internal error: {type(error).__name__}: {error} (run again with --debug for the traceback)")
        raise SystemExit(1) from None


def _head_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="orch serve", description="orch control plane on a Ray head")
    for flag in ("--address", "--gcs", "--home", "--storage", "--cluster-file", "--queues", "--name"):
        parser.add_argument(flag)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    return parser.parse_args(argv)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def serve_head(address: str | None = None, gcs: str | None = None, host: str = "127.0.0.1",
               port: int | None = None, home: str | None = None, storage: str | None = None,
               cluster_file: str | None = None, name: str | None = None, queues: str | None = None,
               say: Callable[[str], None] = lambda m: print(m, flush=True)) -> None:
    """Run the control plane in the foreground beside the Ray head whose dashboard is ``address``
    (as seen on this machine; default ``ORCH_ADDRESS``, else http://127.0.0.1:8265).

    The cluster must have token auth unless ``ORCH_INSECURE``/``--insecure``; the GCS
    address is read from the Ray dashboard's process when not given. ``queues``: a file whose
    ``queues:`` section (an orch cluster file's) gives the queues, on any cluster.
    """
    from orchestrator.adapters import cluster
    from orchestrator.load.cluster import load_queues_file

    if queues:
        load_queues_file(queues)  # before anything else: a typo in it is the user's to fix first

    dashboard = cluster.as_url(address or os.environ.get("ORCH_ADDRESS") or DEFAULT_DASHBOARD)
    port = port or cluster.CONTROL_PORT
    _require_token()  # first: without it no client could ever be let in
    _check_port(host, port)
    auth.check_token_auth(dashboard)
    gcs = gcs or find_gcs_address(dashboard)
    nodes = _check_gcs(dashboard, gcs)
    home_dir = Path(home).expanduser() if home else cluster.orch_home()
    args = parse_args(["--home", str(home_dir), "--dashboard", dashboard, "--gcs", gcs, "--host", host,
                       "--port", str(port), "--storage", storage or str(home_dir / "storage"),
                       "--name", name or socket.gethostname(),
                       *(["--cluster-file", cluster_file] if cluster_file else []),
                       *(["--queues", str(Path(queues).resolve())] if queues else [])])
    say(f"Ray cluster: dashboard {dashboard}, GCS {gcs} ({nodes} nodes); orch state in {home_dir}, "
        f"storage {args.storage}")
    run(args, say)


def _check_port(host: str, port: int) -> None:
    """Fail early and clearly on a taken port (`run` binds it for real later)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server does
            sock.bind((host, port))
    except OSError as error:
        raise ClusterUnavailable(f"the control plane cannot listen on {host}:{port}: {error.strerror or error}; "
                                 "choose another --port") from None


def _check_gcs(dashboard: str, gcs: str) -> int:
    """The number of live nodes the GCS at ``gcs`` reports; ClusterUnavailable when it does not answer.
    A TCP connect first: Ray's own client takes most of a minute to give up on a wrong address."""
    from orchestrator.adapters import cluster
    from orchestrator.load.cluster import queues_of

    host, _, port = gcs.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ClusterUnavailable(f"cannot connect to the GCS at {gcs}: {reason}; pass the head's GCS address "
                                 "with --gcs HOST:PORT") from None
    return len(cluster.live_snapshot(cluster.ClusterInfo(dashboard_url=dashboard, gcs_address=gcs), queues_of(None)).nodes)


def find_gcs_address(dashboard_url: str) -> str:
    """The GCS address of the Ray cluster whose dashboard is ``dashboard_url``, read from the
    dashboard's process on this machine (Ray starts it with ``--port`` and ``--gcs-address``)."""
    parts = urllib.parse.urlsplit(dashboard_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        import psutil
    except ImportError:
        found: set[str] = set()
    else:
        found = gcs_addresses_from(_command_lines(psutil), port)
    if len(found) == 1:
        return found.pop()
    if found:
        raise ClusterUnavailable(f"several Ray dashboards on port {port} ({', '.join(sorted(found))}); "
                                 "pass --gcs HOST:PORT")
    raise ClusterUnavailable(f"no Ray dashboard on port {port} runs on this machine, so orch cannot tell the "
                             "cluster's GCS address: run `orch serve` on the head node, or pass --gcs HOST:PORT "
                             "(`ray start --head` listens on 6379 unless told otherwise)")


def _command_lines(psutil) -> Iterable[list[str]]:
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmdline = proc.info["cmdline"]
        except (psutil.Error, KeyError):
            continue
        if cmdline:
            yield cmdline


def gcs_addresses_from(command_lines: Iterable[list[str]], dashboard_port: int) -> set[str]:
    """``--gcs-address`` of each Ray dashboard process started with ``--port=dashboard_port``."""
    found = set()
    for cmdline in command_lines:
        # A retitled process has its whole command line in one argument.
        args = [word for arg in cmdline for word in arg.split(" ")]
        if not any(a.replace("\\", "/").endswith("/dashboard/dashboard.py") for a in args):
            continue
        flags = dict(a.split("=", 1) for a in args if a.startswith("--") and "=" in a)
        if flags.get("--port") == str(dashboard_port) and flags.get("--gcs-address"):
            found.add(flags["--gcs-address"])
    return found


if __name__ == "__main__":
    main()
