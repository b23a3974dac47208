"""A job's dependencies (``pip:``, ``excludes:``) and its precision without code changes
(issue 21, items 2 and 5): their validation messages, what the dry run shows, what the
package leaves out, who applies the precision, and the runner's bf16 autocast. No Ray runs."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.adapters import cluster, packages
from orchestrator.cli import commands as cli, render
from orchestrator.client import api
from orchestrator.core import events, precision
from orchestrator.core.errors import SpecError
from orchestrator.core.precision import AppliedBy
from orchestrator.core.protocol import PRECISION_ENV
from orchestrator.load import loopcode, requirements
from orchestrator.load.spec import load_spec
from orchestrator.client.view import job_view

PLAIN = "import torch\n\ndef train(config):\n    return torch.nn.Linear(4, 2)(torch.ones(1, 4)).dtype\n"
HELPED = ("import torch\nfrom orchestrator import loop as orch_loop\n\ndef train(config):\n"
          "    scaler = orch_loop.grad_scaler(torch.device('cpu'))\n"
          "    with orch_loop.autocast(torch.device('cpu')):\n        return torch.ones(1).dtype\n")


def job(tmp_path: Path, extra: str = "", code: str = PLAIN) -> Path:
    (tmp_path / "loop.py").write_text(code)
    (tmp_path / "job.yaml").write_text(f"name: deps\nentrypoint: loop.py:train\n{extra}")
    return tmp_path / "job.yaml"


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as error:
        load_spec(path)
    return error.value.problems


# ---- pip: and excludes: in the spec ----------------------------------------------


def test_pip_takes_a_list_of_requirements_or_a_requirements_file_inside_working_dir(tmp_path):
    assert load_spec(job(tmp_path, "pip: [einops==0.8.0, 'numpy>=1.26; python_version >= \"3.10\"']\n")).pip == [
        "einops==0.8.0", 'numpy>=1.26; python_version >= "3.10"']
    (tmp_path / "requirements.txt").write_text("# pinned\neinops==0.8.0  # tensors\n\nhttps://host/x-1.0.whl\n")
    spec = load_spec(job(tmp_path, "pip: requirements.txt\n"))
    assert spec.pip == "requirements.txt"
    assert requirements.pip_lines(spec.pip, spec.working_dir) == ["einops==0.8.0", "https://host/x-1.0.whl"]


def test_bad_requirement_lines_are_reported_where_they_are_with_a_suggestion(tmp_path):
    found = problems(job(tmp_path, "pip: [einops==0.8.0, numpy=1.26, -e ., ./vendor/x.whl, --indx-url=https://x]\n"))
    assert ": pip[1]: 'numpy=1.26' is not a requirement" in found[0] and "did you mean numpy==1.26?" in found[0]
    assert "pip[2]: -e: an editable install needs a source folder on every node" in found[1]
    assert "pip[3]: './vendor/x.whl' is a relative path" in found[2] and "absolute path" in found[2]
    assert "pip[4]: --indx-url: not a pip option" in found[3] and "did you mean '--index-url'?" in found[3]
    assert len(found) == 4


def test_a_requirements_files_bad_lines_are_reported_by_line_number(tmp_path):
    (tmp_path / "requirements.txt").write_text("einops==0.8.0\n\n-r more.txt\ntorch >= \n/opt/wheels/x.whl\n")
    found = problems(job(tmp_path, "pip: requirements.txt\n"))
    assert len(found) == 2 and ": pip: requirements.txt line 3: -r: a nested requirements file" in found[0]
    assert "list its lines here instead" in found[0] and ": pip: requirements.txt line 4: " in found[1]
    assert "'torch >=' is not a requirement" in found[1] and "such as einops, einops==0.8.0" in found[1]


def test_the_requirements_file_must_be_a_file_inside_working_dir(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("einops\n")
    code = tmp_path / "code"
    code.mkdir()
    (code / "linked.txt").symlink_to(outside)
    assert "not found in working_dir" in problems(job(code, "pip: missing.txt\n"))[0]
    assert "leads outside working_dir" in problems(job(code, "pip: linked.txt\n"))[0]
    assert "must be a path inside working_dir" in problems(job(code, "pip: ../outside.txt\n"))[0]
    assert "must be a list of requirements" in problems(job(code, "pip: 3\n"))[0]


def test_excludes_are_patterns_inside_working_dir(tmp_path):
    assert load_spec(job(tmp_path, "excludes: [data/raw, '*.ckpt', '!keep.ckpt']\n")).excludes == [
        "data/raw", "*.ckpt", "!keep.ckpt"]
    assert "'..' matches nothing there" in problems(job(tmp_path, "excludes: [../data]\n"))[0]
    assert "excludes: must be a list" in problems(job(tmp_path, "excludes: data\n"))[0]


def test_excluded_files_never_go_into_the_package(tmp_path):
    code = tmp_path / "code"
    for name in ("train.py", "data/raw/big.bin", "data/small.csv", "a.ckpt", "keep.ckpt"):
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_text(name)
    sent: dict[str, bytes] = {}
    uri = packages.package_working_dir(str(code), sent.__contains__, sent.__setitem__,
                                       excludes=["data/raw", "*.ckpt", "!keep.ckpt"])
    with zipfile.ZipFile(io.BytesIO(sent[packages.name_of(uri)])) as archive:
        assert sorted(archive.namelist()) == ["data/small.csv", "keep.ckpt", "train.py"]


def test_the_dry_run_shows_pip_in_rays_runtime_env_and_what_the_package_leaves_out(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "resolve", lambda address: None)
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "home"))
    code = tmp_path / "code"
    code.mkdir()
    path = job(code, "pip: [einops==0.8.0]\nexcludes: ['*.ckpt']\n")
    shown = render.dry_run_json(api.submit(path, dry_run=True))
    assert shown["ray_job"]["runtime_env"]["pip"] == {"packages": ["einops==0.8.0"], "pip_check": False}
    assert shown["package"]["excludes"] == ["*.ckpt"] and ".git" in shown["package"]["default_excludes"]
    without = api.submit(job(code), dry_run=True)
    assert "pip" not in without["ray_job"]["runtime_env"]


# ---- precision ---------------------------------------------------------------------


@pytest.mark.parametrize("source, used", [
    (PLAIN, set()),
    (HELPED, {"grad_scaler", "autocast"}),
    ("from orchestrator.loop import keras_policy as kp\nkp()\n", {"keras_policy"}),
    ("import orchestrator.loop\norchestrator.loop.precision()\n", {"precision"}),
    ("import orchestrator.loop as L\nwith L.autocast(d): pass\n", {"autocast"}),
    ("import torch\nwith torch.autocast('cpu'): pass\n", set()),  # torch's own, not orch's helper
    ("def broken(:\n", set()),
])
def test_the_helpers_a_loop_calls_are_read_from_its_source(source, used):
    assert loopcode.helpers_used(source) == used


@pytest.mark.parametrize("framework, resolved, helpers, by", [
    ("torch", "bf16", set(), AppliedBy.ORCH),
    ("torch", "bf16", {"autocast"}, AppliedBy.LOOP),  # the loop's own autocast: not applied twice
    ("torch", "fp16", set(), AppliedBy.NONE),  # needs a GradScaler in the loop
    ("torch", "fp16", {"autocast", "grad_scaler"}, AppliedBy.LOOP),
    ("torch", "fp32", set(), AppliedBy.NONE),
    ("tensorflow", "bf16", set(), AppliedBy.ORCH),
    ("tensorflow", "bf16", {"keras_policy"}, AppliedBy.LOOP),
    ("jax", "bf16", set(), AppliedBy.NONE),
])
def test_who_applies_the_precision(framework, resolved, helpers, by):
    assert precision.applied_by(framework, resolved, frozenset(helpers)) is by


def test_validate_warns_when_fp16_would_not_reach_the_loop_and_says_what_to_do(tmp_path):
    path = job(tmp_path, "precision: fp16\n")
    done = CliRunner().invoke(cli.app, ["validate", str(path)])
    assert done.exit_code == 0
    assert "warning: precision: fp16 needs loss scaling" in done.output
    assert "loop.py never calls orchestrator.loop.grad_scaler(device), so it would train in fp32" in done.output
    as_json = json.loads(CliRunner().invoke(cli.app, ["validate", str(path), "--json"]).stdout)
    assert as_json["ok"] is True and len(as_json["warnings"]) == 1
    for fine in ("precision: bf16\n", "precision: auto\n", "precision: fp32\n"):
        assert loopcode.precision_warnings(load_spec(job(tmp_path, fine))) == []
    assert loopcode.precision_warnings(load_spec(job(tmp_path, "precision: fp16\n", HELPED))) == []
    [jax] = loopcode.precision_warnings(load_spec(job(tmp_path, "framework: jax\nprecision: bf16\n")))
    assert "never reads orchestrator.loop.precision()" in jax
    [keras] = loopcode.precision_warnings(load_spec(job(tmp_path, "framework: tensorflow\nprecision: fp16\n")))
    assert "never calls orchestrator.loop.keras_policy()" in keras


def test_status_shows_the_precision_in_effect():
    spec = {"precision": "auto", "framework": "torch", "resources": {"accelerator": "A100:1", "workers": 1}}
    row = {"id": "j", "name": "j", "state": "QUEUED", "priority": 100, "queue": "default", "reason": None,
           "ray_submission_id": None, "attempt": 0, "submitted_at": 0.0, "started_at": None, "ended_at": None,
           "plan": None, "spec": spec, "history": []}
    assert job_view(row, []).precision == "auto"  # not planned yet
    planned = job_view({**row, "plan": {"accelerator": "A100:1", "workers": 1}}, [])
    assert (planned.precision, planned.precision_applied_by) == ("bf16", None)
    said = [{"event": "precision", "precision": "bf16", "applied_by": "orch", "attempt": 1}]
    view = job_view({**row, "plan": {"accelerator": "A100:1", "workers": 1}}, said)
    assert view.to_json()["precision"] == "bf16" and view.to_json()["precision_applied_by"] == "orch"
    assert precision.shown("bf16", "torch", "orch") == "bf16 (orch's autocast)"
    assert precision.shown("bf16", "tensorflow", "orch") == "bf16 (orch's mixed_bfloat16 policy)"
    assert precision.shown("fp16", "torch", "loop") == "fp16 (the loop, with orch's helpers)"
    assert precision.shown("fp16", "torch", "none").startswith("fp16 asked, fp32 in effect")
    assert precision.shown("fp32", "torch", "none") == "fp32"


def test_the_runner_runs_a_plain_torch_loop_under_bf16_autocast_and_says_so(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from orchestrator.runners import train

    plain, helped = tmp_path / "plain", tmp_path / "helped"
    plain.mkdir(), helped.mkdir()
    monkeypatch.setenv(PRECISION_ENV, "bf16")
    spec = load_spec(job(plain, "precision: bf16\n"))
    assert str(train.worker_loop(spec, {}, plain)({})) == "torch.bfloat16"
    own = train.worker_loop(load_spec(job(helped, "precision: bf16\n", HELPED)), {}, helped)
    assert not isinstance(own, train._WithPrecision)  # the loop's own helper decides where autocast applies
    monkeypatch.setenv(PRECISION_ENV, "fp32")
    assert str(train.worker_loop(spec, {}, plain)({})) == "torch.float32"
    said = [(e["precision"], e["applied_by"]) for e in events.parse(capsys.readouterr().out)]
    assert said == [("bf16", "orch"), ("bf16", "loop"), ("fp32", "none")]


def test_the_runner_sets_the_mixed_bfloat16_policy_before_a_plain_keras_loop_runs(monkeypatch):
    tf = pytest.importorskip("tensorflow")
    from orchestrator.runners import train

    monkeypatch.setenv(PRECISION_ENV, "bf16")
    try:
        seen = train._WithPrecision(lambda config: tf.keras.mixed_precision.global_policy().name, "tensorflow")({})
        assert seen == "mixed_bfloat16"
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
