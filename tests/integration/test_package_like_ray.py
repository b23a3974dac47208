"""The client packages a working_dir without Ray and leaves out exactly what Ray's own packager
would: the same files with the same bytes as ``ray._private.runtime_env.packaging.create_package``
for the same folder, the same gitwildmatch patterns as the pathspec copy Ray reads them with, and
Ray's limits and defaults as orch copied them. Ray is the reference here, so this test imports it."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from orchestrator.adapters import packages, wildmatch

PATTERNS = ["*.log", "/build", "build/", "data/*.csv", "**/cache", "docs/**", "a/**/z", "!keep.log", "\\#x",
            "\\!y", "*.py[co]", "[!a]*.txt", "[]x]", "[", "?.md", "secret", "/", "# comment", "", "  ", "a\\*b",
            "*", "**", "sub/", "out-*/", "/top.txt", "x/y/", "name with space ", "[^b]c"]
PATHS = [".", "a.log", "x/a.log", "build", "build/o", "src/build", "src/build/o", "data/t.csv", "data/s/t.csv",
         "cache", "p/q/cache", "p/q/cache/f", "docs", "docs/i", "a/z", "a/b/c/z", "keep.log", "#x", "!y",
         "m.pyc", "m.pyo", "m.py", "b.txt", "a.txt", "]", "x", "[", "R.md", "RE.md", "secret", "s/secret/f",
         "a*b", "ab", "sub", "sub/f", "out-1", "out-1/f", "top.txt", "d/top.txt", "x/y", "x/y/f", "name with space",
         "^c", "bc", "cc"]


def rays_matcher(lines):
    from ray._private.thirdparty.pathspec import PathSpec

    return PathSpec.from_lines("gitwildmatch", lines).match_file


@pytest.mark.parametrize("pattern", PATTERNS)
def test_each_pattern_matches_what_rays_pathspec_matches(pattern):
    ours, rays = wildmatch.matcher([pattern]), rays_matcher([pattern])
    assert [p for p in PATHS if ours(p)] == [p for p in PATHS if rays(p)]


def test_a_later_negation_takes_a_path_back_as_in_rays_pathspec():
    lines = ["*.log\n", "!keep.log\n", "data/\n", "!data/keep\n", "# note\n", "\n"]
    ours, rays = wildmatch.matcher(lines), rays_matcher(lines)
    assert [p for p in PATHS + ["data/keep", "data/other"] if ours(p)] == \
           [p for p in PATHS + ["data/keep", "data/other"] if rays(p)]


def test_the_copied_limits_and_defaults_are_rays():
    from ray._private import ray_constants
    from ray._private.runtime_env import packaging

    assert packages.DEFAULT_EXCLUDES == ray_constants.RAY_RUNTIME_ENV_DEFAULT_EXCLUDES
    assert packages.default_excludes() == ray_constants.get_runtime_env_default_excludes()
    assert packages.IGNORE_GITIGNORE_ENV == ray_constants.RAY_RUNTIME_ENV_IGNORE_GITIGNORE
    assert packages.GRPC_MAX_BYTES == ray_constants.GRPC_CPP_MAX_MESSAGE_SIZE
    assert packages.max_bytes() == min(packaging.GCS_STORAGE_MAX_SIZE - 1, ray_constants.DASHBOARD_CLIENT_MAX_SIZE)
    assert packages.LARGE_FILE_BYTES == packaging.FILE_SIZE_WARNING


def _folder(root: Path) -> Path:
    """A working_dir with what a real one holds: nested ignore files, Ray's default-excluded
    folders, symlinks (to a file, to a folder, dangling), empty folders."""
    files = {
        "train.py": "def loop(config): pass\n", ".gitignore": "*.log\n/outputs/\ndata/*.csv\n!data/keep.csv\n",
        ".rayignore": "scratch\n*.ckpt\n", "run.log": "x", "outputs/model.bin": "w", "nested/outputs/kept.txt": "k",
        "data/a.csv": "1", "data/keep.csv": "2", "data/b.json": "{}", "lib/util.py": "u = 1\n",
        "lib/.gitignore": "*.tmp\n!important.tmp\nbuild/\n", "lib/x.tmp": "t", "lib/important.tmp": "i",
        "lib/build/o.so": "o", "lib/sub/.rayignore": "/only-here.txt\n", "lib/sub/only-here.txt": "no",
        "lib/sub/deeper/only-here.txt": "yes", "lib/m.ckpt": "c", "scratch/s.txt": "s",
        "all-ignored/.gitignore": "*\n", "all-ignored/f.txt": "f", ".git/HEAD": "ref", "__pycache__/m.pyc": "p",
        "venv/bin/python": "v", ".venv/x": "v", "pkg/__pycache__/n.pyc": "p", "state/orch/control.db": "db",
        "state/notes.txt": "n", "weird name [1].txt": "w", "#hash.txt": "h",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for empty in ("empty", "nested/empty/inner", "lib/build/empty"):
        (root / empty).mkdir(parents=True)
    (root / "link-to-train.py").symlink_to("train.py")
    (root / "link-to-lib").symlink_to("lib", target_is_directory=True)
    (root / "dangling").symlink_to("nowhere")
    os.chmod(root / "train.py", 0o755)
    return root


def _contents(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _modes(data: bytes) -> dict[str, int]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: info.external_attr >> 16 for info in archive.infolist()}


def _rays(code: Path, target: Path, excludes: list[str]) -> bytes:
    from ray._private import ray_constants
    from ray._private.runtime_env.packaging import create_package

    include_gitignore = os.environ.get(ray_constants.RAY_RUNTIME_ENV_IGNORE_GITIGNORE, "0") != "1"
    create_package(str(code), target, include_gitignore=include_gitignore,
                   excludes=[*ray_constants.get_runtime_env_default_excludes(), *excludes])
    return target.read_bytes()


def _ours(code: Path, leave_out=()) -> bytes:
    sent: dict[str, bytes] = {}
    packages.package_working_dir(str(code), sent.__contains__, sent.__setitem__, leave_out)
    return next(iter(sent.values()))


@pytest.mark.parametrize("env", [{}, {"RAY_RUNTIME_ENV_IGNORE_GITIGNORE": "1"},
                                 {"RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES": "venv, data"},
                                 {"RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES": ""}])
def test_the_package_holds_the_files_rays_packager_puts_in_with_the_same_bytes(tmp_path, monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = _folder(tmp_path / "code")
    ours, rays = _ours(code, [Path("state/orch")]), _rays(code, tmp_path / "ray.zip", ["/state/orch"])
    assert sorted(_contents(ours)) == sorted(_contents(rays))
    assert _contents(ours) == _contents(rays) and _modes(ours) == _modes(rays)


def test_the_reference_folder_leaves_out_what_the_ignore_files_say(tmp_path):
    """The comparison above means something: the folder exercises each rule."""
    shipped = set(_contents(_ours(_folder(tmp_path / "code"), [Path("state/orch")])))
    for kept in ("train.py", "link-to-train.py", "link-to-lib/util.py", "data/keep.csv", "lib/important.tmp",
                 "lib/sub/deeper/only-here.txt", "nested/outputs/kept.txt", "empty/", "nested/empty/inner/",
                 "state/notes.txt", "weird name [1].txt"):
        assert kept in shipped
    for left in ("run.log", "outputs/model.bin", "data/a.csv", "lib/x.tmp", "lib/build/o.so", "lib/build/empty/",
                 "lib/sub/only-here.txt", "lib/m.ckpt", "scratch/s.txt", "all-ignored/f.txt", ".git/HEAD",
                 "__pycache__/m.pyc", "venv/bin/python", ".venv/x", "pkg/__pycache__/n.pyc",
                 "state/orch/control.db", "dangling"):
        assert left not in shipped
