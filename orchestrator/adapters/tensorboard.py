"""`orch tensorboard`: TensorBoard itself, as a child process on 127.0.0.1, over jobs' event files.

TensorBoard names runs by their folders under its ``--logdir``: that is a temporary folder of
links, one per job, named by the job's id, to the folder of its event files. A training job's
folder holds its event files (run ``JOB``), a sweep's one folder per trial (runs
``JOB/TRIAL``). (``--logdir_spec JOB:FOLDER`` would name a training job's run ``JOB/.``.)
TensorBoard is imported only by its own process, so orch needs it installed only where this
command runs.
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from orchestrator.core.errors import NotAvailable, SpecError

LOOPBACK = "127.0.0.1"
EVENT_FILES = "events.out.tfevents.*"
RUNS, LOG = "runs", "tensorboard.log"
START_TIMEOUT_S = 180  # TensorBoard imports TensorFlow when it is installed: seconds on a busy machine
POLL_S = 0.5
STOP_GRACE_S = 10
INSTALL = "pip install tensorboard (orch's torch extra brings it: pip install 'orch[torch]')"


class TensorBoard:
    """A running TensorBoard: its ``url`` and ``pid``; ``wait()`` until it ends, ``stop()`` it."""

    def __init__(self, process: subprocess.Popen, url: str, work: Path):
        self.process, self.url, self.work = process, url, work  # work: its logdir of links, and its log

    @property
    def log(self) -> Path:
        return self.work / LOG

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self) -> None:
        """Block until TensorBoard ends; ``kill PID`` (SIGTERM) of this process stops it as Ctrl-C does."""
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            code = self.process.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)
        raise NotAvailable(f"TensorBoard ended on its own (exit {code}): {_last_line(self.log)}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.work, ignore_errors=True)  # the links, not what they point to


def start(runs: dict[str, str], port: int = 0, progress: Callable[[str], None] = lambda _: None,
          timeout_s: float = START_TIMEOUT_S) -> TensorBoard:
    """TensorBoard over ``runs`` (run name -> folder of event files) on 127.0.0.1:``port``
    (0: a free one), once it answers. NotAvailable (exit 1) when TensorBoard is not installed
    or a folder holds no event files; SpecError when the port is taken."""
    if not installed():
        raise NotAvailable(f"TensorBoard is not installed here: {INSTALL}")
    for name, folder in runs.items():
        _check_event_files(name, Path(folder))
    port = _free(port)
    work = Path(tempfile.mkdtemp(prefix="orch-tensorboard-"))
    (work / RUNS).mkdir()
    for name, folder in runs.items():
        (work / RUNS / name).symlink_to(Path(folder).resolve(), target_is_directory=True)
    # The Python reader (load_fast=false) walks into linked folders.
    command = [sys.executable, "-m", "tensorboard.main", "--host", LOOPBACK, "--port", str(port),
               "--logdir", str(work / RUNS), "--load_fast", "false"]
    progress(f"starting TensorBoard over {', '.join(runs)} ...")
    # Its own session: Ctrl-C reaches orch, which stops it (also when orch is stopped by `kill`).
    with open(work / LOG, "w") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    served = TensorBoard(process, f"http://{LOOPBACK}:{port}/", work)
    try:
        _until_up(served, timeout_s)
    except BaseException:
        served.stop()
        raise
    return served


def installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def _check_event_files(name: str, folder: Path) -> None:
    if not folder.is_dir():
        raise NotAvailable(f"{name} keeps its event files in {folder}, which is not on this machine: run "
                           "`orch tensorboard` where the cluster's storage is (its head node), or copy the "
                           "folder here and run `tensorboard --logdir FOLDER`")
    if next(folder.rglob(EVENT_FILES), None) is None:
        raise NotAvailable(f"{name} has no TensorBoard event files in {folder} yet: they appear with its "
                           "first report (`orch status` shows its metrics)")


def _free(port: int) -> int:
    """``port`` if nothing listens on it (0: a free port), checked here so a taken one is a
    clear error rather than TensorBoard failing after its slow start."""
    with socket.socket() as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError as error:
            raise SpecError(f"--port {port}: cannot listen on {LOOPBACK}:{port} ({error.strerror}); pick "
                            "another port, or leave --port out for a free one") from None
        return probe.getsockname()[1]


def _until_up(served: TensorBoard, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not _answers(served.url):
        if served.process.poll() is not None:
            raise NotAvailable(f"TensorBoard did not start (exit {served.process.returncode}): "
                               f"{_last_line(served.log)}")
        if time.monotonic() > deadline:
            raise NotAvailable(f"TensorBoard did not answer at {served.url} within {timeout_s:.0f} s: "
                               f"{_last_line(served.log)}")
        time.sleep(POLL_S)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "it printed nothing"


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
