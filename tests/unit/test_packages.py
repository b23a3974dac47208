"""Job code packages kept by the control plane (packages.py): stored whole, found by Ray's
package name, dropped once unused, and made from a folder exactly as Ray's Jobs SDK makes them."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from orchestrator.adapters import packages
from orchestrator.adapters.packages import PackageStore

NAME = "_ray_pkg_0123456789abcdef.zip"


def test_name_of_accepts_only_rays_gcs_package_uris():
    assert packages.name_of(f"gcs://{NAME}") == NAME
    for other in (None, "", NAME, "s3://bucket/code.zip", "gcs://../../etc/passwd", "gcs://_ray_pkg_x.zip"):
        assert packages.name_of(other) is None


def test_a_kept_package_is_found_by_name_and_touched(tmp_path):
    store = PackageStore(tmp_path)
    assert store.path(NAME) is None
    store.keep(NAME, io.BytesIO(b"zip bytes"), 9)
    os.utime(tmp_path / NAME, (0, 0))
    found = store.path(NAME)
    assert found.read_bytes() == b"zip bytes" and found.stat().st_mtime > 0  # a use keeps it fresh


def test_a_short_upload_or_a_bad_name_keeps_nothing(tmp_path):
    store = PackageStore(tmp_path)
    with pytest.raises(ValueError, match="short"):
        store.keep(NAME, io.BytesIO(b"zip"), 9)
    with pytest.raises(ValueError, match="not a Ray package name"):
        store.keep("../control.db", io.BytesIO(b"x"), 1)
    assert list(tmp_path.iterdir()) == [] and store.path("../control.db") is None


def test_unused_packages_are_dropped_after_a_while_used_ones_never(tmp_path):
    store = PackageStore(tmp_path)
    old, fresh, used = (f"_ray_pkg_{c * 16}.zip" for c in "abc")
    for name in (old, fresh, used):
        store.keep(name, io.BytesIO(b"z"), 1)
    now = (tmp_path / fresh).stat().st_mtime
    for name in (old, used):
        os.utime(tmp_path / name, (now - packages.UNUSED_S - 1, now - packages.UNUSED_S - 1))
    assert store.forget_unused([used], now=now) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh, used])


def test_a_folder_is_named_by_its_content_and_sent_once(tmp_path):
    sent: dict[str, bytes] = {}
    for copy in ("code", "elsewhere/same"):  # the same files in another place, written in another order
        code = tmp_path / copy
        code.mkdir(parents=True)
        for name, text in sorted({"train.py": "def loop(config): pass\n", ".gitignore": "*.log\n",
                                  "debug.log": "not shipped\n"}.items(), reverse=copy != "code"):
            (code / name).write_text(text)
        uri = packages.package_working_dir(str(code), sent.__contains__, sent.__setitem__)
        assert packages.name_of(uri) and list(sent) == [packages.name_of(uri)]
    with zipfile.ZipFile(io.BytesIO(sent[packages.name_of(uri)])) as archive:
        assert "train.py" in archive.namelist() and "debug.log" not in archive.namelist()
    # The receiver has it: nothing is sent again.
    assert packages.package_working_dir(str(code), lambda _: True, lambda *_: pytest.fail("sent twice")) == uri
    (code / "train.py").write_text("def loop(config): return 1\n")
    assert packages.package_working_dir(str(code), lambda _: True, lambda *_: None) != uri


def test_an_empty_or_oversized_upload_is_refused(tmp_path, monkeypatch):
    store = PackageStore(tmp_path)
    for length in (0, -1):
        with pytest.raises(ValueError, match="a package holds 1 to"):
            store.keep(NAME, io.BytesIO(b""), length)
    monkeypatch.setenv(packages.GRPC_MAX_BYTES_ENV, "4")  # Ray's GCS limit, as a cluster may lower it
    with pytest.raises(ValueError, match="a package holds 1 to 3"):
        store.keep(NAME, io.BytesIO(b"zips"), 4)
    assert list(tmp_path.iterdir()) == []


def test_a_package_kept_already_stays_as_first_written(tmp_path):
    store = PackageStore(tmp_path)
    store.keep(NAME, io.BytesIO(b"first"), 5)
    again = io.BytesIO(b"other")
    store.keep(NAME, again, 5)
    assert store.path(NAME).read_bytes() == b"first" and again.tell() == 5  # the request was read whole


def test_uploads_a_crash_left_half_written_are_dropped_with_unused_packages(tmp_path):
    store = PackageStore(tmp_path)
    torn = tmp_path / f"{packages.PARTIAL}x1y2"
    torn.write_bytes(b"half")
    now = torn.stat().st_mtime + packages.UNUSED_S + 1
    assert store.forget_unused([], now=now) == [torn.name] and not torn.exists()


def test_a_working_dir_too_big_for_rays_gcs_is_a_spec_error_before_sending(tmp_path, monkeypatch):
    from orchestrator.core.errors import SpecError

    code = tmp_path / "code"
    code.mkdir()
    (code / "data.bin").write_bytes(os.urandom(4096))
    monkeypatch.setenv(packages.GRPC_MAX_BYTES_ENV, "1024")
    with pytest.raises(SpecError, match=r"working_dir: .*code: its package is .* \.gitignore or \.rayignore"):
        packages.package_working_dir(str(code), lambda _: False, lambda *_: pytest.fail("sent"))
    (code / "data.bin").write_bytes(os.urandom(980))  # its bytes fit, with the zip's directory they do not
    with pytest.raises(SpecError, match="its package is over Ray's"):
        packages.package_working_dir(str(code), lambda _: False, lambda *_: pytest.fail("sent"))


def test_orchs_home_with_its_store_storage_and_kept_packages_never_goes_into_a_package(tmp_path, monkeypatch):
    from orchestrator.client import submit as submitting

    code = tmp_path / "project"
    home = code / "state" / "orch"  # ORCH_HOME kept beside the code, as people keep .venv
    for path, text in {"train.py": "def loop(config): pass\n", "state/notes.txt": "shipped\n",
                       "state/orch/control.db": "queued jobs' secrets",
                       f"state/orch/packages/{NAME}": "an earlier job's code",
                       "state/orch/storage/job-1/checkpoint.pt": "weights"}.items():
        (code / path).parent.mkdir(parents=True, exist_ok=True)
        (code / path).write_text(text)
    monkeypatch.setenv("ORCH_HOME", str(home))
    own = submitting.orch_folders_in(str(code))
    assert own == [Path("state/orch")]
    assert submitting.left_out_note(own) == "note: working_dir holds orch's home (state/orch/); the job's package leaves it out"
    sent: dict[str, bytes] = {}
    uri = packages.package_working_dir(str(code), sent.__contains__, sent.__setitem__, own)
    with zipfile.ZipFile(io.BytesIO(sent[packages.name_of(uri)])) as archive:
        shipped = archive.namelist()
    assert "train.py" in shipped and "state/notes.txt" in shipped
    assert not [name for name in shipped if name.startswith("state/orch")], shipped
    # The store changing between two submits (every submit writes it) changes no package name.
    (home / "control.db").write_text("another job queued")
    (home / "packages" / "_ray_pkg_00000000000000aa.zip").write_text("another job's code")
    assert packages.package_working_dir(str(code), lambda _: True, lambda *_: None, own) == uri


def test_working_dir_may_not_be_orchs_home_itself(tmp_path, monkeypatch):
    from orchestrator.client import submit as submitting
    from orchestrator.core.errors import SpecError

    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "home"))
    assert submitting.orch_folders_in(str(tmp_path / "elsewhere")) == []
    for inside in (tmp_path / "home", tmp_path / "home" / "code"):
        with pytest.raises(SpecError, match="is orch's home"):
            submitting.orch_folders_in(str(inside))


def test_the_name_a_job_gets_is_the_name_of_the_package_sent_while_the_folder_changes(tmp_path, monkeypatch):
    """Ray's packaging hashed a folder once for the URI and orch once hashed it again for the
    upload: a folder that changed in between gave the job a package nobody sent. The name is
    now taken from the files as zipped: the package's own files give it again."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("def loop(config): pass\n")
    add = packages._add

    def changing(archive, root, item, *rest):  # a running job writes into the folder as it is zipped
        (code / f"out-{len(list(code.iterdir()))}.txt").write_text("written while packaging")
        return add(archive, root, item, *rest)

    monkeypatch.setattr(packages, "_add", changing)
    sent: dict[str, bytes] = {}
    uri = packages.package_working_dir(str(code), sent.__contains__, sent.__setitem__)
    assert list(sent) == [packages.name_of(uri)]
    monkeypatch.setattr(packages, "_add", add)
    with zipfile.ZipFile(io.BytesIO(sent[packages.name_of(uri)])) as archive:
        archive.extractall(tmp_path / "as-sent")
    assert packages.package_working_dir(str(tmp_path / "as-sent"), lambda _: True, lambda *_: None) == uri
