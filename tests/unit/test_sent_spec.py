"""`orch submit` checks a spec in two places: its files and environment where they are (the
client), its models where they are loaded (the control plane). The problems the two find read as
one list, exactly as `orch validate` (load_spec, one process) lists them."""

from __future__ import annotations

import json

import pytest

from orchestrator.core.errors import SpecError
from orchestrator.load.draft import read_draft
from orchestrator.load.spec import check_sent, load_spec

ENTRY = "def train_loop(config):\n    pass\n"

# (what the spec adds to a valid one, --set options, the environment): each a case of who finds what.
CASES = {
    "valid": ("", (), {}),
    "models only": ("resources: {workerz: 2}\n", ("name=BAD",), {}),
    "files only": ("env: {KEY: {from_env: NOT_SET}}\n", ("entrypoint=missing.py:train_loop",), {}),
    "both, in file order": ("resources: {workers: 0}\nenv: {KEY: {from_env: NOT_SET}}\npip: [\"not a req ment\"]\n",
                            ("working_dir=nowhere",), {}),
    # a bad entrypoint is the models' to report: the files' check must not add "no such file"
    "a field both would report": ("", ("entrypoint=../up.py:train_loop",), {}),
    "the environment has it": ("env: {KEY: {from_env: SET_HERE, secret: true}}\n", (), {"SET_HERE": "x"}),
    "sweep keys": ("config: {lr: 0.1}\nsweep: {metric: m, mode: min, space: {lr: {uniform: [0.1, 0.01]}, "
                   "momentum: {uniform: [0.1, 0.9]}}}\n", (), {}),
}


def _write(tmp_path, extra: str):
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(ENTRY)
    path = tmp_path / "job.yaml"
    path.write_text(f"name: sent\nentrypoint: train.py:train_loop\nworking_dir: code\n{extra}")
    return path


def _split(path, overrides, environ) -> dict:
    """As `orch submit` checks it: the draft here, the models there (their problems through JSON)."""
    draft = read_draft(path, overrides)
    spec, problems = check_sent(draft.text, draft.source, list(draft.overrides))
    draft.report.take(json.loads(json.dumps(problems)))
    folder = draft.check_files(environ)
    draft.raise_problems()
    return {**spec.model_dump(mode="json"), "working_dir": str(folder)}


@pytest.mark.parametrize("case", list(CASES))
def test_problems_found_on_both_sides_read_as_validate_lists_them(tmp_path, case):
    extra, overrides, environ = CASES[case]
    path = _write(tmp_path, extra)
    try:
        local = load_spec(path, overrides, environ=environ, types=None)
    except SpecError as error:
        with pytest.raises(SpecError) as split:
            _split(path, overrides, environ)
        assert (split.value.problems, split.value.details, str(split.value)) == \
               (error.problems, error.details, str(error))
        assert case != "valid" and case != "the environment has it"
        return
    assert _split(path, overrides, environ) == local.model_dump(mode="json")
    assert case in ("valid", "the environment has it")


def test_a_spec_sent_is_read_with_the_same_guards(tmp_path):
    """The control plane reads the text with the hardened reader too: an alias bomb is refused there."""
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + n)}: &{chr(98 + n)} [*{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, "
        f"*{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}]\n"
        for n in range(8))
    with pytest.raises(SpecError, match="job.yaml"):
        check_sent(bomb, "job.yaml", [])


@pytest.mark.parametrize("body", [{"text": 3}, {"text": "name: a", "overrides": "name=b"},
                                  {"text": "name: a", "source": ["job.yaml"]}, {"text": "x", "overrides": [1]}])
def test_a_malformed_request_is_bad_input_not_a_crash(body):
    """The control plane's route refuses what no orch client sends (exit 2 over HTTP: 422)."""
    from orchestrator.control import service

    with pytest.raises(SpecError, match="all text"):
        service.sent_plan(None, body)
