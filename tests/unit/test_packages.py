"""Job code packages kept by the control plane (packages.py): stored whole, found by Ray's
package name, dropped once unused, and made from a folder exactly as Ray's Jobs SDK makes them."""

from __future__ import annotations

import io
import os
import zipfile

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


def test_a_folder_is_packaged_as_rays_sdk_names_it_and_sent_once(tmp_path):
    from ray._private.runtime_env.packaging import get_uri_for_directory
    from ray._private.ray_constants import get_runtime_env_default_excludes

    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("def loop(config): pass\n")
    (code / ".gitignore").write_text("*.log\n")
    (code / "debug.log").write_text("not shipped\n")
    sent: dict[str, bytes] = {}
    uri = packages.package_working_dir(str(code), sent.__contains__, sent.__setitem__)
    assert uri == get_uri_for_directory(str(code), True, excludes=get_runtime_env_default_excludes())
    name = packages.name_of(uri)
    assert list(sent) == [name]
    with zipfile.ZipFile(io.BytesIO(sent[name])) as archive:
        assert "train.py" in archive.namelist() and "debug.log" not in archive.namelist()
    # The receiver has it: nothing is sent again.
    assert packages.package_working_dir(str(code), lambda _: True, lambda *_: pytest.fail("sent twice")) == uri


def test_an_empty_or_oversized_upload_is_refused(tmp_path, monkeypatch):
    from ray._private.runtime_env import packaging

    store = PackageStore(tmp_path)
    for length in (0, -1):
        with pytest.raises(ValueError, match="a package holds 1 to"):
            store.keep(NAME, io.BytesIO(b""), length)
    monkeypatch.setattr(packaging, "GCS_STORAGE_MAX_SIZE", 4)
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
    from ray._private.runtime_env import packaging

    from orchestrator.core.errors import SpecError

    code = tmp_path / "code"
    code.mkdir()
    (code / "data.bin").write_bytes(os.urandom(4096))
    monkeypatch.setattr(packaging, "GCS_STORAGE_MAX_SIZE", 1024)
    with pytest.raises(SpecError, match=r"working_dir: .*code: its package is .* \.gitignore or \.rayignore"):
        packages.package_working_dir(str(code), lambda _: False, lambda *_: pytest.fail("sent"))
