"""The control plane as a process on the head node: `python -m orchestrator.service`.

`orch up` starts it beside the Ray head (its own process group, recorded in
cluster.json). It serves a small JSON API on 127.0.0.1 that requires the
cluster's Ray token, and runs `Control.run_forever` in a thread. All state is
in SQLite under ``--home``: kill it at any moment and start it again.
"""

from __future__ import annotations

import argparse
import hmac
import json
import threading
import traceback
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from orchestrator import auth
from orchestrator.errors import OrchError
from orchestrator.store import JobRow, Store

DB_NAME = "control.db"


def row_json(row: JobRow) -> dict[str, Any]:
    data = asdict(row)
    data["request"] = {"runtime_env": {"working_dir": row.request.get("runtime_env", {}).get("working_dir")}}
    return data


class Handler(BaseHTTPRequestHandler):
    control = None  # set on the subclass made by `serve`
    server_version = "orch-control"

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
        expected = f"Bearer {auth.token() or ''}"
        return hmac.compare_digest(self.headers.get("Authorization", ""), expected)

    def _handle(self, method: str) -> None:
        if not self._authorized():
            return self._reply(401, {"error": "missing or wrong token"})
        parts = [unquote(p) for p in self.path.strip("/").split("/")]
        try:
            code, body = self._route(method, parts)
        except OrchError as error:
            code, body = error.exit_code == 2 and 422 or 404, {"error": str(error), "type": type(error).__name__,
                                                               "reasons": getattr(error, "reasons", None)}
        except Exception as error:  # never let one request kill the service
            traceback.print_exc()
            code, body = 500, {"error": f"{type(error).__name__}: {error}"}
        self._reply(code, body)

    def _body(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def _route(self, method: str, parts: list[str]) -> tuple[int, Any]:
        control = self.control
        if method == "GET" and parts == ["health"]:
            return 200, {"ok": True}
        if method == "GET" and parts == ["jobs"]:
            return 200, [row_json(r) for r in control.store.all()]
        if method == "GET" and len(parts) == 2 and parts[0] == "jobs":
            return 200, row_json(control._find(parts[1]))
        if method == "POST" and parts == ["jobs"]:
            row, created = control.submit(self._body())
            return (201 if created else 200), row_json(row)
        if method == "POST" and parts == ["plan"]:
            return 200, control.plan(self._body()["spec"])
        if method == "POST" and len(parts) == 3 and parts[0] == "jobs" and parts[2] == "cancel":
            return 200, row_json(control.cancel(parts[1]))
        return 404, {"error": f"no route {method} /{'/'.join(parts)}"}

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


def serve(control, port: int) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"control": control})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description="orch control plane")
    parser.add_argument("--home", required=True)
    parser.add_argument("--dashboard", required=True)
    parser.add_argument("--gcs", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--cluster-file")
    parser.add_argument("--name", default="local")
    args = parser.parse_args()
    auth.apply_to_environ()

    from orchestrator import cluster, clusterconfig
    from orchestrator.client import JobsClient
    from orchestrator.control import Control

    held = cluster.hold_control_lock(Path(args.home), wait_s=5.0)
    if held is None:
        raise SystemExit(f"another orch control plane serves {args.home}")
    # A Ray launcher YAML or KubeRay RayCluster describes a cluster the autoscaler grows: plan
    # against it at its largest. Such a config has no orch queues (only `default`); an orch
    # cluster file lists nodes that all exist, and its queues.
    max_scale = clusterconfig.autoscaling_snapshot(args.cluster_file) if args.cluster_file else None
    info = cluster.ClusterInfo(dashboard_url=args.dashboard, gcs_address=args.gcs, name=args.name,
                               cluster_file=None if max_scale else args.cluster_file, storage=args.storage)
    control = Control(Store(Path(args.home) / DB_NAME), JobsClient(info),
                      lambda: cluster.live_snapshot(info), args.storage,
                      max_scale_source=(lambda: max_scale) if max_scale else None)
    server = serve(control, args.port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"orch control plane on 127.0.0.1:{args.port}", flush=True)
    control.run_forever()


if __name__ == "__main__":
    main()
