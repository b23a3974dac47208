"""The control plane's HTTP contract as the client sees it: each orch error comes back as the
same kind of error (a missing job is JobNotFound, bad input SpecError, a cluster problem
ClusterUnavailable), and packages go in whole, once, by Ray's name, with the token only."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pytest

from orchestrator.adapters.cluster import ClusterInfo
from orchestrator.adapters.packages import PackageStore
from orchestrator.client.control_plane import ControlClient
from orchestrator.control import service
from orchestrator.core.errors import ClusterUnavailable, JobNotFound, SpecError
from orchestrator.core.lifecycle import JobState

TOKEN = "stand-in-token"
NAME = "_ray_pkg_0123456789abcdef.zip"


class FakeControl:
    def __init__(self, folder):
        self.packages = PackageStore(folder)

    def _find(self, job):
        raise JobNotFound(job)

    def plan(self, spec, eta=False):
        raise SpecError("resources.gpus: 'many' is not a number")

    def cluster(self):
        raise ClusterUnavailable("cannot connect to the GCS at 127.0.0.1:1")


@pytest.fixture
def control(monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    fake = FakeControl(tmp_path / "packages")
    server = service.serve(fake, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    yield ControlClient(ClusterInfo(dashboard_url="http://127.0.0.1:1", control_url=url, process_groups=[1])), fake
    server.shutdown()
    server.server_close()


def test_each_error_comes_back_as_the_same_kind(control):
    client, _ = control
    with pytest.raises(JobNotFound, match="no job 'no-such-job'"):
        client.get("no-such-job")
    with pytest.raises(SpecError, match="resources.gpus"):
        client.plan({"spec": {}})
    with pytest.raises(ClusterUnavailable, match="cannot connect to the GCS at 127.0.0.1:1"):
        client.cluster()


def test_a_package_is_kept_once_and_found_by_name(control):
    client, fake = control
    assert not client._has_package(NAME)
    client._put_package(NAME, b"zip bytes")
    client._put_package(NAME, b"different")  # same name, same content by Ray's hash: the first stays
    assert client._has_package(NAME) and fake.packages.path(NAME).read_bytes() == b"zip bytes"


def test_a_bad_package_name_or_an_empty_package_is_refused(control):
    client, fake = control
    with pytest.raises(SpecError, match="not a Ray package name"):
        client._put_package("control.db", b"x")
    with pytest.raises(SpecError, match="a package holds 1 to"):
        client._put_package(NAME, b"")
    assert fake.packages.path(NAME) is None


def test_packages_need_the_token(control):
    client, fake = control
    for header in ({}, {"Authorization": "Bearer wrong"}):
        put = urllib.request.Request(f"{client.base}/packages/{NAME}", b"zip bytes", header, method="PUT")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(put, timeout=10)
        assert refused.value.code == 401
    assert fake.packages.path(NAME) is None


def test_an_older_control_plane_without_a_route_is_named_as_such(control, monkeypatch):
    client, _ = control
    monkeypatch.delattr(service.Handler, "do_PUT")  # as before packages: Python's 501
    with pytest.raises(ClusterUnavailable, match="does not serve PUT /packages/.*older orch"):
        client._put_package(NAME, b"zip")
    with pytest.raises(ClusterUnavailable, match="does not serve /nothing-here.*older orch"):
        client._call("/nothing-here")


def test_a_refused_upload_is_read_before_the_answer_so_the_client_sees_it(control, monkeypatch):
    from orchestrator.adapters import packages

    client, fake = control
    monkeypatch.setenv(packages.GRPC_MAX_BYTES_ENV, str(1 << 20))
    with pytest.raises(SpecError, match="a package holds 1 to"):  # not a reset connection
        client._put_package(NAME, b"z" * (8 << 20))
    put = urllib.request.Request(f"{client.base}/packages/{NAME}", b"z" * (8 << 20), {}, method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:  # no token
        urllib.request.urlopen(put, timeout=10)
    assert refused.value.code == 401 and fake.packages.path(NAME) is None


def test_cancel_says_whether_this_call_ended_the_job(monkeypatch, tmp_path):
    from orchestrator.control.loop import Control
    from orchestrator.control.store import Store
    from tests.unit.test_control import Clock, FakeJobs, _snapshot, _submit

    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    control = Control(Store(tmp_path / "control.db"), FakeJobs(), _snapshot, str(tmp_path / "storage"), clock=Clock())
    _submit(control, "one")
    server = service.serve(control, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ControlClient(ClusterInfo(dashboard_url="http://127.0.0.1:1", process_groups=[1],
                                           control_url=f"http://127.0.0.1:{server.server_address[1]}"))
        first, again = client.cancel("one"), client.cancel("one")
        assert (first["state"], first["cancelled"]) == (JobState.CANCELLED, True)
        assert (again["state"], again["cancelled"]) == (JobState.CANCELLED, False)
    finally:
        server.shutdown()
        server.server_close()
        control.store.close()


@pytest.mark.parametrize("job", ["a/b", "%2e%2e", "qa fail"])
def test_no_such_job_names_the_id_as_typed(control, job):
    client, _ = control
    with pytest.raises(JobNotFound) as missing:
        client.get(job)
    assert str(missing.value).startswith(f"no job {job!r}")
