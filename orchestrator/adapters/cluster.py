"""Ray clusters at the edge: find, start and stop them, and read their state.

orch starts local and simulated clusters as ``ray start --block`` processes,
each in its own process group, and records those groups in
``$ORCH_HOME/cluster.json``: ``orch down`` stops exactly what orch started and
nothing else on the machine. Reading a live cluster goes straight to the GCS
(no ``ray.init``: that would register a driver and cost seconds).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

from orchestrator.adapters import auth
from orchestrator.adapters.ports import free_ports
from orchestrator.core import hardware
from orchestrator.core.errors import ClusterUnavailable, SpecError
from orchestrator.core.hardware import Accelerator
from orchestrator.core.protocol import DRIVER_RESOURCE, NODE_LABEL, SIMULATED_LABEL
from orchestrator.core.snapshot import ClusterSnapshot, Node, QueueConfig, default_queues

DRIVER_SLOTS = 64
START_TIMEOUT_S = 90
SIM_OBJECT_STORE_BYTES = 256 * 1024**2
CONTROL_LOCK = "control.lock"  # held by the live control plane for as long as it runs
CONTROL_PORT = 8266  # `orch serve`'s port, where `--address` looks for the control plane (beside 8265)
CONTROL_ADDRESS_ENV = "ORCH_CONTROL_ADDRESS"  # the control plane's URL, when it is not there
NOT_RUNNING = "no cluster is running; start one with `orch up` (or pass --address)"


def orch_home() -> Path:
    return Path(os.environ.get("ORCH_HOME", Path.home() / ".orch")).expanduser()


@dataclass
class ClusterInfo:
    """How to reach a cluster, and what orch started for it (if anything)."""

    dashboard_url: str
    gcs_address: str | None = None
    name: str = "local"
    cluster_file: str | None = None
    storage: str | None = None
    process_groups: list[int] = field(default_factory=list)
    control_url: str | None = None
    control_pgid: int | None = None

    @property
    def started_by_orch(self) -> bool:
        return bool(self.process_groups)


# ---- finding the cluster ---------------------------------------------------


def state_path() -> Path:
    return orch_home() / "cluster.json"


def read_state() -> ClusterInfo | None:
    try:
        return ClusterInfo(**json.loads(state_path().read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def _write_state(info: ClusterInfo) -> None:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(info), indent=2))
    tmp.replace(path)  # atomic: a reader never sees half a file


def resolve(address: str | None) -> ClusterInfo | None:
    """The cluster to talk to: ``--address``, else ``ORCH_ADDRESS``, else orch's local one."""
    address = address or os.environ.get("ORCH_ADDRESS")
    if address:
        return _remote(as_url(address))
    return _local()


def as_url(address: str) -> str:
    """``HOST:PORT`` or a URL, as a URL without a trailing slash."""
    address = address.strip()
    return (address if "://" in address else f"http://{address}").rstrip("/")


def control_url_for(dashboard_url: str) -> str:
    """Where the control plane of the cluster whose dashboard is ``dashboard_url`` answers.

    ``ORCH_CONTROL_ADDRESS`` when set; else the dashboard's host on CONTROL_PORT
    (`orch serve`'s default): a tunnel to the head forwards both ports.
    """
    override = os.environ.get(CONTROL_ADDRESS_ENV, "").strip()
    if override:
        return as_url(override)
    host = urllib.parse.urlsplit(dashboard_url).hostname or "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{CONTROL_PORT}"


def _remote(url: str) -> ClusterInfo:
    """A cluster named by its dashboard URL: orch's local one if it is that, else one whose head
    runs `orch serve`. It must have token auth (or the user said --insecure)."""
    local = read_state()
    if local and local.dashboard_url == url and not os.environ.get(CONTROL_ADDRESS_ENV, "").strip():
        found = _local()
        if found:
            return found
    auth.check_token_auth(url)
    return ClusterInfo(dashboard_url=url, name=url, control_url=control_url_for(url))


def _local() -> ClusterInfo | None:
    info = read_state()
    # The head is the cluster: a lost worker node leaves a smaller cluster, not none.
    if info and _groups_alive(info.process_groups[:1]):
        if not _control_alive():
            with _lock():
                info = read_state()
                if not _control_alive():
                    _start_control(info)  # it crashed or was killed: its state is on disk
                    _write_state(info)
        return info
    return None


def hold_control_lock(home: Path, wait_s: float = 0.0):
    """The control plane's claim on ``home``: an open file with an exclusive flock, or None if taken.

    The kernel drops the lock when the process dies however it dies, so a
    free lock means no control plane (a pid could be reused, or a zombie's).
    ``wait_s`` rides out liveness probes, which hold the lock for an instant.
    """
    handle = open(home / CONTROL_LOCK, "a")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                return None
            time.sleep(0.05)


def _control_alive() -> bool:
    held = hold_control_lock(orch_home())
    if held is None:
        return True
    held.close()
    return False


def require(address: str | None) -> ClusterInfo:
    info = resolve(address)
    if info is None:
        raise ClusterUnavailable(NOT_RUNNING)
    return info


def _groups_alive(groups: list[int]) -> bool:
    for pgid in groups:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
    return bool(groups)


# ---- starting and stopping -------------------------------------------------


_lock_depth = threading.local()


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """One `orch up` at a time on this machine, so concurrent submits share a cluster.

    Re-entrant within a thread: `up` holds it while `resolve` may need it too.
    """
    depth = getattr(_lock_depth, "n", 0)
    if depth:
        _lock_depth.n = depth + 1
        try:
            yield
        finally:
            _lock_depth.n = depth
        return
    orch_home().mkdir(parents=True, exist_ok=True)
    with open(orch_home() / "cluster.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _lock_depth.n = 1
        try:
            yield
        finally:
            _lock_depth.n = 0


def up(cluster_file: str | None = None, progress=print,
       read: Callable[[str], ClusterSnapshot] | None = None) -> ClusterInfo:
    """Start the local (or a simulated) cluster, or return the running one.

    ``read`` turns the cluster file into its snapshot (``load.cluster.read_cluster``): reading
    files is the loaders' business, and only a cluster that starts needs it."""
    with _lock():
        running = resolve(None)
        if running and cluster_file and not running.started_by_orch:
            raise SpecError(f"--cluster {cluster_file}: orch uses the cluster at {running.dashboard_url} "
                            "(ORCH_ADDRESS); unset it to start a cluster on this machine")
        if running and cluster_file and running.cluster_file != str(Path(cluster_file).resolve()):
            raise SpecError(f"--cluster {cluster_file}: cluster {running.name} is up already (from "
                            f"{running.cluster_file or 'no cluster file'}); `orch down` first to start another")
        if running:
            return running
        nodes, name, queues_file = _nodes_to_start(cluster_file, read)
        auth.ensure_token()
        info = ClusterInfo(dashboard_url="", name=name, cluster_file=queues_file,
                           storage=str(orch_home() / "storage"))
        try:
            _start_nodes(info, nodes, progress)
            _start_control(info)
        except BaseException:
            _stop_groups(info.process_groups + ([info.control_pgid] if info.control_pgid else []))
            raise
        _write_state(info)
        return info


def down(progress=print) -> bool:
    """Stop what orch started; False when nothing was running."""
    with _lock():
        info = read_state()
        if info is None:
            return False
        # Control plane, then workers, then the head: nothing is left chasing a stopped peer.
        control = [info.control_pgid] if info.control_pgid else []
        _stop_groups(control + list(reversed(info.process_groups)))
        state_path().unlink(missing_ok=True)
        progress(f"stopped cluster {info.name} ({len(info.process_groups)} Ray nodes)")
        return True


def _nodes_to_start(cluster_file: str | None, read: Callable[[str], ClusterSnapshot] | None,
                    ) -> tuple[list[Node], str, str | None]:
    if cluster_file is None:
        local = Node(name="local-0", total={}, free={}, labels={})
        return [local], "local", None
    snap = read(cluster_file)
    return list(snap.nodes), snap.name, str(Path(cluster_file).resolve())


def _start_nodes(info: ClusterInfo, nodes: list[Node], progress) -> None:
    logs = orch_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    head, *workers = nodes
    gcs_port, dash_port, client_port = free_ports(3)
    info.gcs_address = f"127.0.0.1:{gcs_port}"
    info.dashboard_url = f"http://127.0.0.1:{dash_port}"
    progress(f"starting Ray head {head.name} (dashboard {info.dashboard_url})")
    head_args = ["--head", "--port", str(gcs_port), "--dashboard-host", "127.0.0.1",
                 "--dashboard-port", str(dash_port), "--ray-client-server-port", str(client_port)]
    info.process_groups.append(_spawn(head, head_args, logs, info.gcs_address, ray_temp_dir(), is_head=True))
    _wait_until(lambda: _answers(f"{info.dashboard_url}/api/jobs/"), "the Ray head", logs / f"{head.name}.log")
    _wait_for_nodes(info.gcs_address, 1)
    # One at a time: several raylets starting at once on a small machine time out.
    for joined, node in enumerate(workers, start=2):
        progress(f"starting Ray node {node.name}")
        info.process_groups.append(_spawn(node, ["--address", info.gcs_address], logs, info.gcs_address,
                                          node_temp_dir(joined - 1), is_head=False))
        _wait_for_nodes(info.gcs_address, joined)


def _start_control(info: ClusterInfo) -> None:
    """Start the control plane (orchestrator.control.service) and wait until it answers."""
    port, = free_ports(1)
    args = [sys.executable, "-m", "orchestrator.control.service", "--home", str(orch_home()),
            "--dashboard", info.dashboard_url, "--gcs", info.gcs_address, "--port", str(port),
            "--storage", info.storage, "--name", info.name]
    if info.cluster_file:
        args += ["--cluster-file", info.cluster_file]
    log = open(orch_home() / "logs" / "control.log", "a")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=auth.ray_env())
    info.control_pgid, info.control_url = proc.pid, f"http://127.0.0.1:{port}"
    _wait_until(lambda: _answers(f"{info.control_url}/health"), "the orch control plane",
                orch_home() / "logs" / "control.log")


def ray_temp_dir() -> Path:
    """This cluster's own Ray temp dir, short (Ray's unix sockets live under it) and one per ORCH_HOME.

    Ray's job supervisor starts each driver with RAY_ADDRESS set to "auto", which
    it resolves from ``<temp dir>/ray_current_cluster``: the last head started
    with that temp dir. In the shared default (/tmp/ray), a Ray head started
    later on the same machine (another orch cluster, anyone's ``ray start``)
    would take this cluster's drivers, and a stale file would hang them.
    """
    digest = hashlib.sha256(str(orch_home().resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir(), f"orch-ray-{digest}")


def node_temp_dir(index: int) -> Path:
    """The Ray temp dir of this cluster's ``index``-th node after the head. Ray unpacks job
    packages under a node's temp dir, and a node setting up a package it has not used yet
    replaces the unpacked folder: nodes simulated on one machine that shared a temp dir
    pulled the folder from under each other's drivers and workers, as separate machines never do."""
    return Path(f"{ray_temp_dir()}-{index}")


def _spawn(node: Node, role_args: list[str], logs: Path, gcs_address: str, temp_dir: Path, is_head: bool) -> int:
    agent, agent_grpc, runtime_env, metrics = free_ports(4)
    args = [_ray_executable(), "start", "--block", "--disable-usage-stats", *role_args,
            "--temp-dir", str(temp_dir), *_resource_args(node, is_head),
            "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
            "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port", str(metrics)]
    log = open(logs / f"{node.name}.log", "w")
    env = auth.ray_env()
    # Job drivers run `python`: make it this interpreter, which has orch and Ray installed.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # Workers inherit this: Ray's helpers that run in them with no address (Train's placement
    # group cleaner) would otherwise read /tmp/ray's last head, or fail with two heads up.
    # (Drivers get the address from the job supervisor, which reads ray_temp_dir().)
    env["RAY_ADDRESS"] = gcs_address
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    return proc.pid  # start_new_session: the pid is the process group id


def _resource_args(node: Node, is_head: bool) -> list[str]:
    """`ray start` flags that give a node the resources and labels real hardware would."""
    total = dict(node.total)
    custom = {k: v for k, v in total.items() if k not in (hardware.CPU, hardware.GPU, hardware.MEMORY)}
    if is_head:
        custom[DRIVER_RESOURCE] = DRIVER_SLOTS
    labels = {**node.labels, NODE_LABEL: node.name}
    args = []
    if hardware.CPU in total:
        args += ["--num-cpus", str(int(total[hardware.CPU]))]
    if hardware.GPU in total:
        args += ["--num-gpus", str(int(total[hardware.GPU]))]
    if hardware.MEMORY in total:
        args += ["--memory", str(int(total[hardware.MEMORY]))]
    if any(key in total for key in hardware.DEVICE_RESOURCES):
        labels[SIMULATED_LABEL] = "true"
    if node.total:  # simulated nodes share one machine: keep their object stores small
        args += ["--object-store-memory", str(SIM_OBJECT_STORE_BYTES)]
    args += ["--resources", json.dumps(custom)]
    args += ["--labels", ",".join(f"{k}={v}" for k, v in labels.items())]
    return args


def _stop_groups(groups: list[int], grace_s: float = 5.0) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_group_exists(g) for g in groups):
        time.sleep(0.2)
    # `ray start --block` can linger with its GCS after SIGTERM: finish it.
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(auth.request(url), timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


def _wait_until(ready: Callable[[], bool], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise ClusterUnavailable(f"{what} did not come up within {START_TIMEOUT_S}s; its log ends:\n{tail}")


def _wait_for_nodes(gcs_address: str, expected: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if len(_node_states(gcs_address)) >= expected:
            return
        time.sleep(0.5)
    raise ClusterUnavailable(f"only some of the {expected} Ray nodes joined within {START_TIMEOUT_S}s; "
                             f"see the logs in {orch_home() / 'logs'}")


def _ray_executable() -> str:
    # The ray next to this interpreter: the cluster then runs the same orch and Ray.
    candidate = Path(sys.executable).with_name("ray")
    return str(candidate) if candidate.exists() else "ray"


# ---- reading a live cluster ----------------------------------------------


def _node_states(gcs_address: str) -> list:
    auth.apply_to_environ()  # before Ray loads: its GCS client reads the mode once
    from ray._raylet import GcsClient
    from ray.autoscaler.v2.sdk import get_cluster_resource_state
    from ray.core.generated.autoscaler_pb2 import NodeStatus

    try:
        state = get_cluster_resource_state(GcsClient(address=gcs_address))
    except Exception as error:  # Ray raises several kinds for an unreachable GCS
        raise ClusterUnavailable(f"cannot read the cluster state at {gcs_address}: {error}") from error
    return [n for n in state.node_states if n.status in (NodeStatus.RUNNING, NodeStatus.IDLE)]


def live_snapshot(info: ClusterInfo, queues: Mapping[str, QueueConfig] | None = None,
                  accelerators: Mapping[str, Accelerator] | None = None) -> ClusterSnapshot:
    """Nodes with total and free resources and labels, read from the GCS; ``queues`` as the
    cluster's (or queues) file defines them (``load.cluster.queues_of``), else the one default
    queue; ``accelerators``, the custom types its file declares (``load.cluster.accelerators_of``).
    A node's ``accelerator_type:X`` that nothing describes becomes a type of unknown figures
    (``snapshot.SnapshotIndex``), so ``X:N``, ``GPU:N`` and ``auto`` see it."""
    if not info.gcs_address:
        raise ClusterUnavailable(f"{info.dashboard_url}: reading a remote cluster's nodes needs its GCS address")
    nodes = []
    for state in _node_states(info.gcs_address):
        labels = dict(state.labels)
        node_id = state.node_id.hex()
        total = _user_resources(state.total_resources)
        nodes.append(Node(
            name=labels.get(NODE_LABEL, node_id[:8]),
            total=total,
            # Ray leaves out what is all taken: a node with no free CPU has no CPU entry.
            free={**dict.fromkeys(total, 0.0), **_user_resources(state.available_resources)},
            labels=labels,
            node_id=node_id,
        ))
    nodes.sort(key=lambda n: n.name)
    return ClusterSnapshot(name=info.name, nodes=tuple(nodes), queues=default_queues() if queues is None else queues,
                           accelerators=accelerators or {})


def local_snapshot() -> ClusterSnapshot:
    """This machine as `orch up` would start it, for planning before a cluster runs."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.7  # Ray's default share
    total = {hardware.CPU: float(os.cpu_count() or 1), hardware.MEMORY: float(int(memory))}
    node = Node(name="local-0", total=total, free=dict(total), labels={NODE_LABEL: "local-0"})
    return ClusterSnapshot(name="local", nodes=(node,), queues=default_queues())


# Ray's own per-placement-group resources: CPU_group_<pg id>, CPU_group_<bundle>_<pg id>, bundle_group_...
_PLACEMENT_GROUP_RESOURCE = re.compile(r".+_group_(\d+_)?[0-9a-f]{16,}")


def _user_resources(resources) -> dict[str, float]:
    # node:<ip>, object store and placement group bookkeeping are Ray's, not something a job asks for.
    return {k: float(v) for k, v in resources.items()
            if not k.startswith("node:") and k != "object_store_memory" and not _PLACEMENT_GROUP_RESOURCE.fullmatch(k)}

