"""What orch starts listens on loopback and answers nobody without the token."""

from __future__ import annotations

import os

import psutil
import pytest

from tests.conftest import http_status, record_figure

pytestmark = pytest.mark.ray
LOOPBACK = {"127.0.0.1", "::1"}


def _listening(pgid: int) -> set[tuple[str, int]]:
    found = set()
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) != pgid:
                continue
            found |= {(c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="tcp")
                      if c.status == psutil.CONN_LISTEN}
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return found


def _current(local_cluster):
    """The cluster as recorded now: other tests kill and restart the control plane."""
    from orchestrator.adapters import cluster

    return cluster.require(None)


def test_control_plane_and_dashboard_listen_on_loopback_only(local_cluster):
    local_cluster = _current(local_cluster)
    control = _listening(local_cluster.control_pgid)
    assert control and {ip for ip, _ in control} <= LOOPBACK, control
    dashboard_port = int(local_cluster.dashboard_url.rsplit(":", 1)[1])
    head = _listening(local_cluster.process_groups[0])
    assert {ip for ip, port in head if port == dashboard_port} <= LOOPBACK, head
    exposed = sorted(port for ip, port in control | {(i, p) for i, p in head if p == dashboard_port}
                     if ip not in LOOPBACK)
    record_figure("network: orch control plane and Ray dashboard ports on non-loopback addresses",
                  len(exposed), "0 (Ray's GCS/raylet ports bind all interfaces; token auth guards them)",
                  not exposed)


def test_nothing_answers_without_the_token(local_cluster):
    local_cluster = _current(local_cluster)
    codes = {"control plane": http_status(f"{local_cluster.control_url}/jobs"),
             "Jobs API": http_status(f"{local_cluster.dashboard_url}/api/jobs/")}
    refused = sum(code == 401 for code in codes.values())
    record_figure("auth: requests without the token answered (control plane, Jobs API)",
                  len(codes) - refused, "0 (HTTP 401)", refused == len(codes))
    assert codes == {"control plane": 401, "Jobs API": 401}
