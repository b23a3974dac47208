"""Paths in a job spec cannot leave their roots (docs/spec.md, "Paths").

name and schedule.queue cannot hold a path at all; a FILE.py entrypoint lies
inside working_dir; working_dir may be any folder but the filesystem root or
one holding the home folder, and a relative one may not go through a symlink
that leads out of the folder holding the link; relative init_from,
predict.model and predict.input paths are read from working_dir and may not
climb or link out of it; predict.output stays inside the job's output folder.
Each refusal names the field and the value and says what to write instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.core.errors import SpecError
from orchestrator.core.spec import JobSpec
from tests.conftest import record_figure
from orchestrator.load.spec import load_spec, validate_text

HEAD = "name: demo\nentrypoint: train.py:train_loop\n"
PREDICT = "predict: {{model: {model}, input: {input}, output: {output}}}\n"


def predict(model: str = "job:demo", input: str = "data/test.npz", output: str = "out/p.npz") -> str:
    return PREDICT.format(model=model, input=input, output=output)


def _with(extra: str) -> str:
    """HEAD plus ``extra``, where a top-level field in ``extra`` replaces HEAD's."""
    fields = {line.split(":", 1)[0] for line in extra.splitlines()}
    kept = [line for line in HEAD.splitlines() if line.split(":", 1)[0] not in fields]
    return "\n".join(kept) + "\n" + extra + "\n"


def problem_of(text: str, overrides: tuple[str, ...] = ()) -> str | None:
    """The one problem validation reports; None when it accepts the spec."""
    try:
        validate_text(text, "job.yaml", overrides)
    except SpecError as error:
        assert error.exit_code == 2
        assert len(error.problems) == 1, error.problems
        return error.problems[0]
    return None


# ---- checks that need no files (they hold for any JobSpec, from YAML or JSON) -------------

REFUSED = [
    # (yaml after HEAD, field, the value as the message quotes it, the suggestion's words)
    ("name: ../../etc", "name", "'../../etc'", "lowercase letters"),
    ("name: a/b", "name", "'a/b'", "lowercase letters"),
    ("name: '.'", "name", "'.'", "lowercase letters"),
    ("schedule: {queue: ../prod}", "schedule.queue", "'../prod'", "lowercase letters"),
    ("entrypoint: ../train.py:train_loop", "entrypoint", "'../train.py'", "move the file into working_dir"),
    ("entrypoint: a/../../train.py:train_loop", "entrypoint", "'a/../../train.py'", "such as train.py:train_loop"),
    ("entrypoint: /etc/train.py:train_loop", "entrypoint", "'/etc/train.py'", "without '..' or a leading '/'"),
    ("entrypoint: '~/train.py:train_loop'", "entrypoint", "'~/train.py:train_loop'", "FILE.py:FUNC"),
    ("working_dir: /", "working_dir", "'/'", "point working_dir at the job's own folder"),
    ("working_dir: //", "working_dir", "'//'", "the whole filesystem"),
    ("working_dir: /./", "working_dir", "'/./'", "the whole filesystem"),
    ("working_dir: ~/project", "working_dir", "'~/project'", "write the folder's absolute path"),
    ("working_dir: ''", "working_dir", "", "must not be empty"),
    ('working_dir: "code\\0"', "working_dir", "'code\\x00'", "write a plain path"),
    ('working_dir: "code\\n/etc"', "working_dir", "'code\\n/etc'", "control character"),
    ("init_from: job:../../etc", "init_from", "'job:../../etc'", "such as job:digits-mlp"),
    ("init_from: 'job:'", "init_from", "'job:'", "name or id of an earlier job"),
    ("init_from: job:Digits", "init_from", "'job:Digits'", "lowercase letters"),
    ("init_from: ../checkpoints/best", "init_from", "'../checkpoints/best'", "write an absolute path or job:NAME"),
    ("init_from: ckpt/../../x", "init_from", "'ckpt/../../x'", "inside working_dir"),
    ("init_from: ~/ckpt", "init_from", "'~/ckpt'", "'~' is not expanded"),
    ("init_from: ''", "init_from", "", "must not be empty"),
    (predict(model="../model"), "predict.model", "'../model'", "inside working_dir"),
    (predict(model="job:../x"), "predict.model", "'job:../x'", "after 'job:'"),
    (predict(input="../../data.npz"), "predict.input", "'../../data.npz'", "such as data/test.npz"),
    (predict(input="'~/data.npz'"), "predict.input", "'~/data.npz'", "'~' is not expanded"),
    (predict(output="/etc/cron.d/x"), "predict.output", "'/etc/cron.d/x'", "the job's output folder"),
    (predict(output="../out.npz"), "predict.output", "'../out.npz'", "such as out/predictions.npz"),
    (predict(output="out/../../x.npz"), "predict.output", "'out/../../x.npz'", "without '..'"),
    (predict(output="'s3://bucket/out.npz'"), "predict.output", "'s3://bucket/out.npz'", "URIs are not supported"),
    (predict(output="'~/out.npz'"), "predict.output", "'~/out.npz'", "'~' is not expanded"),
    (predict(output="'.'"), "predict.output", "'.'", "must name a file"),
    (predict(output="''"), "predict.output", "", "must not be empty"),
]


@pytest.mark.parametrize("extra, field, value, suggestion", REFUSED)
def test_refused_paths_name_field_value_and_suggestion(extra, field, value, suggestion):
    problem = problem_of(_with(extra))
    named = f": {field}: " in problem and value in problem and suggestion in problem
    # Recorded before the asserts, so the table shows a miss as measured.
    record_figure(f"path safety: escaping paths accepted ({len(REFUSED)} cases: .., /, ~, symlinks)",
                  0 if problem else 1, "0, each refused naming field, value and fix", bool(problem) and named)
    assert problem is not None, f"{field}: accepted"
    assert f": {field}: " in problem, problem
    assert value in problem, problem
    assert suggestion in problem, problem


ACCEPTED = [
    ("entrypoint: train.py:train_loop", lambda s: s.entrypoint, "train.py:train_loop"),
    ("entrypoint: ./src/train.py:main", lambda s: s.entrypoint, "./src/train.py:main"),
    ("entrypoint: pkg.train:main", lambda s: s.entrypoint, "pkg.train:main"),
    ("working_dir: ../src", lambda s: s.working_dir, "../src"),
    ("working_dir: /srv/jobs/digits", lambda s: s.working_dir, "/srv/jobs/digits"),
    ("init_from: job:digits-mlp", lambda s: s.init_from, "job:digits-mlp"),
    ("init_from: job:digits-mlp-1a2b3c", lambda s: s.init_from, "job:digits-mlp-1a2b3c"),
    ("init_from: s3://bucket/ckpt/best", lambda s: s.init_from, "s3://bucket/ckpt/best"),
    ("init_from: gs://bucket/ckpt", lambda s: s.init_from, "gs://bucket/ckpt"),
    ("init_from: /mnt/shared/ckpt", lambda s: s.init_from, "/mnt/shared/ckpt"),
    ("init_from: checkpoints/best", lambda s: s.init_from, "checkpoints/best"),
    ("init_from: ./checkpoints/best", lambda s: s.init_from, "./checkpoints/best"),
    (predict(model="/mnt/m", input="s3://b/in.npz", output="p.npz"), lambda s: s.predict.input, "s3://b/in.npz"),
    (predict(input="/data/test.npz"), lambda s: s.predict.input, "/data/test.npz"),
    (predict(output="out/deep/p.npz"), lambda s: s.predict.output, "out/deep/p.npz"),
]


@pytest.mark.parametrize("extra, get, expected", ACCEPTED)
def test_accepted_paths(extra, get, expected):
    assert get(validate_text(_with(extra))) == expected


@pytest.mark.parametrize("field, value", [
    ("entrypoint", "../x.py:main"), ("working_dir", "/"), ("init_from", "job:../x"), ("init_from", "../x"),
])
def test_the_model_refuses_escapes_without_yaml(field, value):
    """The control plane and the launcher validate spec JSON with JobSpec directly."""
    data = {"name": "demo", "entrypoint": "train.py:main", field: value}
    with pytest.raises(ValidationError):
        JobSpec.model_validate(data)


def test_the_model_refuses_output_escapes_without_yaml():
    with pytest.raises(ValidationError):
        JobSpec.model_validate({"name": "demo", "entrypoint": "m:f",
                                "predict": {"model": "job:a", "input": "i", "output": "/etc/passwd"}})


def test_a_loaded_spec_round_trips_with_its_absolute_working_dir(tmp_path):
    spec = load_spec(_job(tmp_path / "job"))
    assert Path(spec.working_dir).is_absolute()
    assert JobSpec.model_validate(spec.model_dump(mode="json")) == spec


# ---- checks on files: symlinks, the home folder ------------------------------------------


def _job(folder: Path, extra: str = "", head: str = HEAD) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_text("def train_loop(config):\n    pass\n")
    path = folder / "job.yaml"
    path.write_text(head + extra)
    return path


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """tmp/job (the spec's folder), tmp/outside (a folder a link should not reach), HOME elsewhere."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    outside = tmp_path / "outside"
    (outside / "ckpt").mkdir(parents=True)
    (outside / "train.py").write_text("def train_loop(config):\n    pass\n")
    (outside / "evil.py").write_text("def main(config):\n    pass\n")
    job = tmp_path / "job"
    job.mkdir()
    return tmp_path


def load_problem(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert len(caught.value.problems) == 1, caught.value.problems
    return caught.value.problems[0]


@pytest.mark.parametrize("target", ["absolute", "relative"])
def test_working_dir_through_a_symlink_out_of_its_folder(layout, target):
    link = layout / "job" / "code"
    link.symlink_to(layout / "outside" if target == "absolute" else "../outside")
    problem = load_problem(_job(layout / "job", "working_dir: code\n"))
    assert ": working_dir: 'code' goes through the symlink" in problem
    assert f"-> {(layout / 'outside').resolve()}" in problem
    assert f"write the folder's real path ({(layout / 'outside').resolve()})" in problem


def test_working_dir_through_a_chain_of_symlinks(layout):
    (layout / "job" / "b").symlink_to(layout / "outside")
    (layout / "job" / "a").symlink_to("b")
    assert "goes through the symlink" in load_problem(_job(layout / "job", "working_dir: a\n"))


def test_working_dir_through_a_symlink_after_climbing(layout):
    (layout / "other").mkdir()
    (layout / "other" / "code").symlink_to(layout / "outside")
    problem = load_problem(_job(layout / "job", "working_dir: ../other/code\n"))
    assert "working_dir: '../other/code' goes through the symlink" in problem


def test_working_dir_may_link_within_its_folder_climb_or_be_absolute(layout):
    job = layout / "job"
    (job / "releases" / "v2").mkdir(parents=True)
    (job / "releases" / "v2" / "train.py").write_text("def train_loop(config): pass\n")
    (job / "current").symlink_to("releases/v2")
    assert load_spec(_job(job, "working_dir: current\n")).working_dir == str((job / "releases" / "v2").resolve())
    # climbing is written in the spec for all to see (the fixtures' ../valid): allowed
    assert load_spec(_job(job, "working_dir: ../outside\n")).working_dir == str((layout / "outside").resolve())
    # an absolute path is explicit, even through a symlink
    (job / "code").symlink_to(layout / "outside")
    spec = load_spec(_job(job, f"working_dir: {job / 'code'}\n"))
    assert spec.working_dir == str((layout / "outside").resolve())


def test_working_dir_never_the_home_folder_or_above_it(layout, monkeypatch):
    home = layout / "home"
    monkeypatch.setenv("HOME", str(home))
    problem = load_problem(_job(home, "working_dir: .\n"))
    assert "working_dir: '.' is your home folder" in problem and "keys and credentials" in problem
    problem = load_problem(_job(home / "proj", "working_dir: ..\n"))
    assert "working_dir: '..' is your home folder" in problem
    problem = load_problem(_job(layout / "job", f"working_dir: {layout}\n"))
    assert f"which holds your home folder ({home.resolve()})" in problem
    assert load_spec(_job(home / "proj")).working_dir == str((home / "proj").resolve())


def test_working_dir_climbing_to_the_filesystem_root(layout):
    climb = "/".join([".."] * (len(layout.resolve().parts) + 3))
    problem = load_problem(_job(layout / "job", f"working_dir: {climb}\n"))
    assert "is the filesystem root" in problem


def test_entrypoint_through_a_symlink_out_of_working_dir(layout):
    (layout / "job" / "link.py").symlink_to(layout / "outside" / "evil.py")
    problem = load_problem(_job(layout / "job", head="name: demo\nentrypoint: link.py:main\n"))
    assert "entrypoint: 'link.py' leads outside working_dir" in problem
    assert "copy the file into working_dir" in problem


def test_entrypoint_may_link_within_working_dir(layout):
    (layout / "job" / "alias.py").symlink_to("train.py")
    spec = load_spec(_job(layout / "job", head="name: demo\nentrypoint: alias.py:train_loop\n"))
    assert spec.entrypoint == "alias.py:train_loop"


@pytest.mark.parametrize("field, extra", [
    ("init_from", "init_from: {path}\n"),
    ("predict.model", "predict: {{model: {path}, input: data.npz, output: out/p.npz}}\n"),
    ("predict.input", "predict: {{model: job:demo, input: {path}, output: out/p.npz}}\n"),
])
def test_sources_through_a_symlink_out_of_working_dir(layout, field, extra):
    (layout / "job" / "ckpt").symlink_to(layout / "outside" / "ckpt")
    problem = load_problem(_job(layout / "job", extra.format(path="ckpt")))
    assert f": {field}: 'ckpt' leads outside working_dir" in problem
    assert "write the real path instead" in problem


def test_sources_inside_working_dir_or_not_there_yet_are_fine(layout):
    job = layout / "job"
    (job / "checkpoints" / "best").mkdir(parents=True)
    (job / "latest").symlink_to("checkpoints/best")
    assert load_spec(_job(job, "init_from: latest\n")).init_from == "latest"
    assert load_spec(_job(job, "init_from: not/yet/there\n")).init_from == "not/yet/there"
    assert load_spec(_job(job, f"init_from: {layout / 'outside' / 'ckpt'}\n")).init_from.endswith("ckpt")


def test_path_problems_are_all_reported_at_once_with_positions(layout):
    text = ("name: demo\nentrypoint: ../x.py:main\ninit_from: job:../x\n"
            "predict: {model: job:a, input: ../i, output: /o}\n")
    with pytest.raises(SpecError) as caught:
        load_spec(_job(layout / "job", head=text))
    fields = [p.split(": ")[1] for p in caught.value.problems]
    assert fields == ["entrypoint", "init_from", "predict.input", "predict.output"]
    assert all(p.startswith(str(layout / "job" / "job.yaml") + ":") for p in caught.value.problems)
