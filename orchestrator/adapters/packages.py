"""Job code packages: a job's ``working_dir`` as Ray packages it, kept by the control plane.

The client makes the package with the standard library, leaving out what Ray's
own packager would, so `orch submit` needs no Ray; the control plane, beside
Ray, puts it into Ray's GCS under its name.

Ray keeps an uploaded package in the GCS only while something uses it, and an
unused upload for ``RAY_RUNTIME_ENV_TEMPORARY_REFERENCE_EXPIRATION_S`` (600 s):
a job queued longer than that, or queued across ``orch down``/``orch up``,
would find its code gone at launch. So the CLI hands the package to the
control plane, which keeps it beside the job store and puts it back into
Ray's GCS just before each launch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import tempfile
import time
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from orchestrator.adapters import wildmatch
from orchestrator.core.errors import SpecError

FOLDER = "packages"  # beside the job store on the head node (storage may be a bucket)
NAME = re.compile(r"_ray_pkg_[0-9a-f]{8,64}\.(zip|tar\.gz|tar\.xz)")  # Ray's content-hash package names
GCS = "gcs://"
UNUSED_S = 3600.0  # a package no queued or active job uses is dropped this long after its last use
CHUNK = 1 << 20
PARTIAL = ".partial-"  # an upload being written; one a crash left behind is dropped like a package
NAME_HEX = 32  # hex digits of the content hash in a package's name (128 bits of SHA-256)

# Ray's, copied so the client needs no Ray (ray/_private/ray_constants.py and runtime_env/packaging.py
# of Ray 2.60; tests/unit/test_package_like_ray.py holds them to Ray's):
GRPC_MAX_BYTES = 512 * 2**20  # GRPC_CPP_MAX_MESSAGE_SIZE, the GCS's limit on one stored package
GRPC_MAX_BYTES_ENV = "RAY_max_grpc_message_size"  # overrides it (GCS_STORAGE_MAX_SIZE)
DASHBOARD_MAX_BYTES = 100 * 2**20  # DASHBOARD_CLIENT_MAX_SIZE: the most the dashboard reads of a request
DEFAULT_EXCLUDES = ".git,.venv,venv,__pycache__"  # RAY_RUNTIME_ENV_DEFAULT_EXCLUDES
DEFAULT_EXCLUDES_ENV = "RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES"  # comma-separated; empty: none
IGNORE_GITIGNORE_ENV = "RAY_RUNTIME_ENV_IGNORE_GITIGNORE"  # "1": .gitignore files are not read
IGNORE_FILES = (".gitignore", ".rayignore")
LARGE_FILE_BYTES = 10 * 2**20  # FILE_SIZE_WARNING: a file this big is named in a warning


def max_bytes() -> int:
    """The largest package Ray takes: under its GCS limit (one gRPC message), and within what
    its dashboard reads in one request (a launch puts the package back through the dashboard)."""
    return min(int(os.environ.get(GRPC_MAX_BYTES_ENV, GRPC_MAX_BYTES)) - 1, DASHBOARD_MAX_BYTES)


def default_excludes() -> list[str]:
    """What Ray leaves out of every package (its ray_constants.get_runtime_env_default_excludes)."""
    value = os.environ.get(DEFAULT_EXCLUDES_ENV, DEFAULT_EXCLUDES)
    return [part.strip() for part in value.split(",") if part.strip()]


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
                        leave_out: Iterable[Path] = (), excludes: Iterable[str] = ()) -> str:
    """Package ``path`` as Ray's packager would (its default excludes, the spec's ``excludes``
    (gitignore patterns matched from ``path``, as Ray's runtime_env ``excludes``), the .gitignore
    and .rayignore of every folder, a zip of the files), without the ``leave_out`` folders (relative
    to ``path``: orch's home with its job store, kept packages and storage), and ``put`` it
    unless ``have`` says the receiver has it already; the ``gcs://`` URI.

    The name is a hash of the files as they went into the zip, taken while zipping: a folder
    that changes meanwhile (orch's own store inside it, a job writing into it) still names the
    package that was made. (Hashing the folder and zipping it in two passes gave jobs names
    no package was ever kept under.) Ray takes any ``_ray_pkg_<hex>.zip`` its GCS holds.
    """
    patterns = [*default_excludes(), *excludes, *(_anchored(folder) for folder in leave_out)]
    data, name = _zip(Path(path).absolute(), patterns)
    if not have(name):
        put(name, data)
    return GCS + name


class _TooBig(Exception):
    """The package went over the limit while being zipped: the rest is not read."""


def _zip(root: Path, excludes: list[str]) -> tuple[bytes, str]:
    """The zip of ``root`` as Ray's ``create_package`` makes it (stored, not compressed: the
    same size against the same limit), and its package name."""
    if not root.is_dir():
        raise SpecError(f"working_dir: {root}: not a folder")
    limit, buffer, digest = max_bytes(), io.BytesIO(), hashlib.sha256()
    gitignore = os.environ.get(IGNORE_GITIGNORE_ENV, "0") != "1"
    with contextlib.suppress(_TooBig), zipfile.ZipFile(buffer, "w", strict_timestamps=False) as archive:
        _walk(root, [(root, wildmatch.matcher(excludes))], gitignore,
              lambda item: _add(archive, root, item, digest, buffer, limit))
    if buffer.tell() > limit:
        raise SpecError(f"working_dir: {root}: its package is over Ray's {limit / 2**20:,.0f} MiB limit; "
                        "leave data and outputs out with the spec's excludes, .gitignore or .rayignore")
    return buffer.getvalue(), f"_ray_pkg_{digest.hexdigest()[:NAME_HEX]}.zip"


def _walk(path: Path, excludes: list[tuple[Path, Callable[[str], bool]]], gitignore: bool,
          visit: Callable[[Path], None]) -> None:
    """Ray's ``_dir_travel``: a folder's ignore files count for it and everything under it
    (matched relative to that folder), read before the folder itself is matched. In name order,
    so an unchanged folder gives the same package."""
    excludes = [*excludes, *_ignore_files(path, gitignore)]
    if any(match(path.relative_to(base).as_posix()) for base, match in excludes):
        return
    visit(path)
    if path.is_dir():
        for item in sorted(path.iterdir()):
            _walk(item, excludes, gitignore, visit)


def _ignore_files(folder: Path, gitignore: bool) -> list[tuple[Path, Callable[[str], bool]]]:
    names = IGNORE_FILES if gitignore else IGNORE_FILES[1:]
    return [(folder, wildmatch.matcher((folder / name).read_text().split("\n")))
            for name in names if (folder / name).is_file()]


def _add(archive: zipfile.ZipFile, root: Path, item: Path, digest, buffer: io.BytesIO, limit: int) -> None:
    """Zip a file, or a folder with nothing in it, as Ray's ``_zip_files`` does (symlinks
    followed), hashing its name and the bytes zipped."""
    if item.is_dir():
        if next(item.iterdir(), None) is None:
            archive.write(item, item.relative_to(root))
            digest.update(archive.infolist()[-1].filename.encode() + b"\0")
        return
    if not item.is_file():  # a dangling symlink, a socket: Ray skips it too
        return
    info = zipfile.ZipInfo.from_file(item, item.relative_to(root), strict_timestamps=False)
    if info.file_size >= LARGE_FILE_BYTES:
        logging.getLogger(__name__).warning(f"working_dir: {item} is {info.file_size / 2**20:,.1f} MiB; "
                                            "leave it out with the spec's excludes, .gitignore or .rayignore "
                                            "unless the job needs it")
    content = hashlib.sha256()
    with open(item, "rb") as source, archive.open(info, "w") as target:
        while chunk := source.read(CHUNK):
            content.update(chunk)
            target.write(chunk)
            if buffer.tell() > limit:
                raise _TooBig
    digest.update(info.filename.encode() + b"\0" + content.digest())


def _anchored(folder: Path) -> str:
    """A gitignore pattern that matches exactly ``folder`` (relative to working_dir), taken literally."""
    return "/" + re.sub(r"([\\\[\]*?!#])", r"\\\1", folder.as_posix())
