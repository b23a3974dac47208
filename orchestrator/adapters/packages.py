"""Job code packages: a job's ``working_dir`` as Ray packages it, kept by the control plane.

Ray keeps an uploaded package in the GCS only while something uses it, and an
unused upload for ``RAY_RUNTIME_ENV_TEMPORARY_REFERENCE_EXPIRATION_S`` (600 s):
a job queued longer than that, or queued across ``orch down``/``orch up``,
would find its code gone at launch. So the CLI hands the package to the
control plane, which keeps it beside the job store and puts it back into
Ray's GCS just before each launch.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from orchestrator.core.errors import SpecError

FOLDER = "packages"  # beside the job store on the head node (storage may be a bucket)
NAME = re.compile(r"_ray_pkg_[0-9a-f]{8,64}\.(zip|tar\.gz|tar\.xz)")  # Ray's content-hash package names
GCS = "gcs://"
UNUSED_S = 3600.0  # a package no queued or active job uses is dropped this long after its last use
CHUNK = 1 << 20
PARTIAL = ".partial-"  # an upload being written; one a crash left behind is dropped like a package


def max_bytes() -> int:
    """The largest package Ray takes: under its GCS limit, and within what its dashboard reads
    in one request (a launch puts the package back through the dashboard)."""
    from ray._private.ray_constants import DASHBOARD_CLIENT_MAX_SIZE
    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE

    return min(GCS_STORAGE_MAX_SIZE - 1, DASHBOARD_CLIENT_MAX_SIZE)


def name_of(uri: str | None) -> str | None:
    """The package name in a ``gcs://`` working_dir URI; None for anything else."""
    if uri and uri.startswith(GCS) and NAME.fullmatch(uri[len(GCS):]):
        return uri[len(GCS):]
    return None


class PackageStore:
    """Packages on the head node's disk, by Ray's content-hash name."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, name: str) -> Path | None:
        """The kept file of ``name``, touched as used now; None when it is not kept."""
        if not NAME.fullmatch(name):
            return None
        path = self.folder / name
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        return path

    def keep(self, name: str, body: BinaryIO, length: int) -> None:
        """Write ``length`` bytes of ``body`` as package ``name``: whole or not at all.
        A package already kept stays as it is (the name is a hash of its content)."""
        if not NAME.fullmatch(name):
            raise ValueError(f"not a Ray package name: {name!r}")
        if not 0 < length <= max_bytes():  # Ray would refuse it at launch
            raise ValueError(f"package {name}: {length} bytes; a package holds 1 to {max_bytes()}")
        if self.path(name):
            with open(os.devnull, "wb") as nowhere:
                _copy(body, nowhere, length, name)  # read the request whole, so the client's send completes
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=self.folder, prefix=PARTIAL)
        try:
            with os.fdopen(fd, "wb") as handle:
                _copy(body, handle, length, name)
                handle.flush()
                os.fsync(handle.fileno())  # a crash after the reply must not leave a torn package
            os.replace(partial, self.folder / name)
            _sync_folder(self.folder)  # the rename too: a package answered for must survive a crash
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise

    def forget_unused(self, used: Iterable[str], now: float | None = None) -> list[str]:
        """Drop the packages outside ``used`` that nothing touched for UNUSED_S; their names."""
        now = time.time() if now is None else now
        used = set(used)
        dropped = []
        for path in [*self.folder.glob("_ray_pkg_*"), *self.folder.glob(f"{PARTIAL}*")]:
            try:
                idle = now - path.stat().st_mtime
            except FileNotFoundError:  # an upload finished (or failed) since the listing
                continue
            if path.name not in used and idle > UNUSED_S:
                path.unlink(missing_ok=True)
                dropped.append(path.name)
        return dropped


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(body: BinaryIO, handle: BinaryIO, length: int, name: str) -> None:
    left = length
    while left > 0:
        chunk = body.read(min(CHUNK, left))
        if not chunk:
            raise ValueError(f"package {name}: the upload ended {left} bytes short")
        handle.write(chunk)
        left -= len(chunk)


def inside(working_dir: str | Path, folders: Iterable[str | Path]) -> list[Path]:
    """Which of ``folders`` lie inside ``working_dir``, relative to it."""
    root = Path(working_dir).resolve()
    found = []
    for folder in folders:
        try:
            found.append(Path(folder).expanduser().resolve().relative_to(root))
        except ValueError:  # outside: Ray would not pack it
            continue
    return found


def package_working_dir(path: str, have: Callable[[str], bool], put: Callable[[str, bytes], None],
                        leave_out: Iterable[Path] = ()) -> str:
    """Package ``path`` as Ray's Jobs SDK would (its default excludes, .gitignore and
    .rayignore, content-hash name), without the ``leave_out`` folders (relative to ``path``:
    orch's home with its job store, kept packages and storage), and ``put`` it unless
    ``have`` says the receiver has it already; the ``gcs://`` URI.

    The name is computed once and is both the job's URI and the name the package is put
    under. (Ray's ``upload_working_dir_if_needed`` hashes the folder for the URI and its
    upload callback had to hash it again: a folder that changed in between, say orch's
    own store inside it, gave the job a name no package was ever kept under.)
    """
    from ray._private import ray_constants
    from ray._private.runtime_env.packaging import create_package, get_uri_for_directory

    include_gitignore = os.environ.get(ray_constants.RAY_RUNTIME_ENV_IGNORE_GITIGNORE, "0") != "1"
    logging.getLogger("ray._private.runtime_env.packaging").setLevel(logging.WARNING)  # no INFO lines in the CLI
    excludes = [*ray_constants.get_runtime_env_default_excludes(),
                *(_anchored(folder) for folder in leave_out)]
    uri = get_uri_for_directory(path, include_gitignore, excludes=excludes)
    name = uri[len(GCS):]
    if have(name):
        return uri
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / name
        create_package(path, target, include_gitignore=include_gitignore, excludes=excludes)
        size = target.stat().st_size
        if size > max_bytes():
            raise SpecError(f"working_dir: {path}: its package is {size / 2**20:,.1f} MiB, "
                            f"over Ray's {max_bytes() / 2**20:,.0f} MiB limit; leave data and "
                            "outputs out with .gitignore or .rayignore")
        put(name, target.read_bytes())
    return uri


def _anchored(folder: Path) -> str:
    """A gitignore pattern that matches exactly ``folder`` (relative to working_dir), taken literally."""
    return "/" + re.sub(r"([\\\[\]*?!#])", r"\\\1", folder.as_posix())
