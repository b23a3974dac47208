"""Secrets in the spec (docs/spec.md, "Secrets"): the syntax, its validation, and the pure
functions that split, resolve and redact them (orchestrator/core/masking.py)."""

from __future__ import annotations

import json

import pytest

from orchestrator.core.errors import SpecError
from orchestrator.core.masking import REDACTED, EnvParts, redact, redact_stream, resolve_env, secret_values, split_env
from orchestrator.core.spec import EnvFrom, JobSpec
from orchestrator.load.spec import load_spec, validate_text

HEAD = "name: demo\nentrypoint: train.py:train_loop\n"
ENV = (
    "env:\n"
    "  LOG_LEVEL: info\n"
    "  WANDB_API_KEY: {from_env: WANDB_API_KEY, secret: true}\n"
    "  HF_TOKEN: {from_env: hf_token, secret: true}\n"
    "  GIT_SHA: {from_env: CI_COMMIT_SHA}\n"
)
ENVIRON = {"WANDB_API_KEY": "wandb-0123456789abcdef", "hf_token": "hf_SECRET_token", "CI_COMMIT_SHA": "1a2b3c4d",
           "UNRELATED": "x"}


@pytest.fixture
def spec() -> JobSpec:
    return validate_text(HEAD + ENV)


# ---- the syntax ----------------------------------------------------------------------


def test_plain_and_from_env_entries_load(spec):
    assert spec.env == {
        "LOG_LEVEL": "info",
        "WANDB_API_KEY": EnvFrom(from_env="WANDB_API_KEY", secret=True),
        "HF_TOKEN": EnvFrom(from_env="hf_token", secret=True),
        "GIT_SHA": EnvFrom(from_env="CI_COMMIT_SHA", secret=False),
    }


def test_the_stored_spec_holds_names_never_values(tmp_path):
    (tmp_path / "train.py").write_text("def train_loop(config): pass\n")
    (tmp_path / "job.yaml").write_text(HEAD + ENV)
    spec = load_spec(tmp_path / "job.yaml", environ=ENVIRON)  # what `orch submit` loads
    dumped = json.dumps(spec.model_dump(mode="json"))  # what the control plane stores
    assert '"WANDB_API_KEY": {"from_env": "WANDB_API_KEY", "secret": true}' in dumped
    assert not any(ENVIRON[name] in dumped for name in ("WANDB_API_KEY", "hf_token", "CI_COMMIT_SHA"))
    assert JobSpec.model_validate(json.loads(dumped)).env == spec.env


REFUSED = [
    ("env: {K: {from_env: X, secret: true, value: s3cr3t}}", "env.K.value: unknown field 'value' (allowed: from_env, secret)"),
    ("env: {K: {form_env: X}}", "env.K.form_env: unknown field 'form_env'; did you mean 'from_env'?"),
    ("env: {K: {from_env: X, secrte: true}}", "env.K.secrte: unknown field 'secrte'; did you mean 'secret'?"),
    ("env: {K: {secret: true}}", "env.K.from_env: required field is missing"),
    ("env: {K: {}}", "env.K.from_env: required field is missing"),
    ("env: {K: {from_env: X, secret: 'true'}}", "env.K.secret: must be true or false, got 'true'"),
    ("env: {K: {from_env: X, secret: 1}}", "env.K.secret: must be true or false, got 1"),
    ("env: {K: {from_env: 3}}", "env.K.from_env: must be a string, got 3"),
    ("env: {K: {from_env: 'A-B'}}", "env.K.from_env: must be letters, digits and '_'"),
    ("env: {K: {from_env: '$HOME'}}", "env.K.from_env: must be letters, digits and '_'"),
    ("env: {K: {from_env: ''}}", "env.K.from_env: must be letters, digits and '_'"),
    ("env: {K: [a, b]}", "env.K: must be a string, got ['a', 'b']; or {from_env: VAR}"),
    ("env: {K: 3}", "env.K: must be a string, got 3"),
    ("env: {k: {from_env: X}}", "env.k: must be upper-case letters"),
]


@pytest.mark.parametrize("extra, words", REFUSED)
def test_strict_syntax(extra, words):
    with pytest.raises(SpecError) as caught:
        validate_text(HEAD + extra, "job.yaml")
    assert len(caught.value.problems) == 1 and words in caught.value.problems[0], caught.value.problems


def test_from_env_through_set_override():
    spec = validate_text(HEAD, overrides=("env.TOKEN={from_env: MY_TOKEN, secret: true}",))
    assert spec.env["TOKEN"] == EnvFrom(from_env="MY_TOKEN", secret=True)


def test_json_schema_offers_both_forms():
    from orchestrator.core.spec import json_schema

    schema = json_schema()
    values = schema["properties"]["env"]["patternProperties"]["^[A-Z_][A-Z0-9_]*$"]
    assert {"type": "string"} in values["oneOf"]
    assert schema["$defs"]["EnvFrom"]["additionalProperties"] is False
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator(schema).validate(
        {"name": "a", "entrypoint": "m:f", "env": {"A": "x", "K": {"from_env": "K", "secret": True}}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(
            {"name": "a", "entrypoint": "m:f", "env": {"K": {"from_env": "K", "value": "x"}}})


# ---- a missing submitter variable: an error at validate and submit time ------------------


def test_load_spec_reports_a_missing_variable_at_its_position(tmp_path, monkeypatch):
    (tmp_path / "train.py").write_text("def train_loop(config): pass\n")
    path = tmp_path / "job.yaml"
    path.write_text(HEAD + ENV)
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("hf_token")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.exit_code == 2
    assert caught.value.problems == [
        f"{path}:6:24: env.HF_TOKEN.from_env: hf_token is not set in your environment; export it before "
        "submitting (orch reads the secret value of HF_TOKEN from the submitter's environment)"
    ]
    assert load_spec(path, environ=ENVIRON).env["HF_TOKEN"].from_env == "hf_token"
    assert load_spec(path, environ=None).name == "demo"  # None: not checked


def test_validate_text_checks_variables_only_when_given_an_environ():
    assert validate_text(HEAD + ENV).name == "demo"
    with pytest.raises(SpecError, match="env.GIT_SHA.from_env: CI_COMMIT_SHA is not set"):
        validate_text(HEAD + ENV, environ={"WANDB_API_KEY": "a", "hf_token": "b"})


def test_an_empty_variable_counts_as_set():
    spec = validate_text(HEAD + ENV, environ={**ENVIRON, "CI_COMMIT_SHA": ""})
    assert resolve_env(spec, {**ENVIRON, "CI_COMMIT_SHA": ""}).values["GIT_SHA"] == ""


# ---- split_env ----------------------------------------------------------------------------


def test_split_env(spec):
    expected = EnvParts(
        plain={"LOG_LEVEL": "info"},
        from_env={"WANDB_API_KEY": "WANDB_API_KEY", "HF_TOKEN": "hf_token", "GIT_SHA": "CI_COMMIT_SHA"},
        secret=frozenset({"WANDB_API_KEY", "HF_TOKEN"}),
    )
    assert split_env(spec) == expected
    assert split_env(spec.env) == expected
    assert split_env(spec.model_dump(mode="json")["env"]) == expected  # as the control plane stores it
    assert split_env({}) == EnvParts({}, {}, frozenset())


# ---- resolve_env --------------------------------------------------------------------------


def test_resolve_env(spec):
    resolved = resolve_env(spec, ENVIRON)
    assert resolved.values == {"LOG_LEVEL": "info", "WANDB_API_KEY": "wandb-0123456789abcdef",
                               "HF_TOKEN": "hf_SECRET_token", "GIT_SHA": "1a2b3c4d"}
    assert resolved.secrets == frozenset({"wandb-0123456789abcdef", "hf_SECRET_token"})  # not the git sha


def test_resolve_env_names_every_missing_variable_and_no_value(spec):
    with pytest.raises(SpecError) as caught:
        resolve_env(spec, {"hf_token": "hf_SECRET_token"})
    assert caught.value.exit_code == 2
    assert caught.value.problems == [
        "env.WANDB_API_KEY.from_env: WANDB_API_KEY is not set in your environment; export it before submitting",
        "env.GIT_SHA.from_env: CI_COMMIT_SHA is not set in your environment; export it before submitting",
    ]
    assert "hf_SECRET_token" not in str(caught.value)


def test_resolve_env_ignores_empty_secrets_for_redaction(spec):
    assert resolve_env(spec, {**ENVIRON, "hf_token": ""}).secrets == frozenset({"wandb-0123456789abcdef"})


def test_secret_values_found_again_in_a_stored_env(spec):
    stored = {**resolve_env(spec, ENVIRON).values, "PYTHONUNBUFFERED": "1"}  # runtime_env["env_vars"]
    assert secret_values(spec.model_dump(mode="json")["env"], stored) == resolve_env(spec, ENVIRON).secrets
    assert secret_values(spec, {"HF_TOKEN": "", "LOG_LEVEL": "info"}) == frozenset()


def test_resolve_env_without_entries_from_the_environment():
    resolved = resolve_env(validate_text(HEAD + "env: {A: b}"), {})
    assert resolved.values == {"A": "b"} and resolved.secrets == frozenset()


# ---- redact -------------------------------------------------------------------------------

SECRETS = frozenset({"wandb-0123456789abcdef", "hf_SECRET_token"})


def test_redact_text():
    text = "key=wandb-0123456789abcdef and hf_SECRET_token, again wandb-0123456789abcdef."
    assert redact(text, SECRETS) == "key=*** and ***, again ***."


def test_redact_json_able_objects_recursively_without_changing_the_input():
    value = {"env_vars": {"WANDB_API_KEY": "wandb-0123456789abcdef", "N": 3, "F": 1.5, "B": True, "Z": None},
             "args": ["--token", "hf_SECRET_token", ("x hf_SECRET_token y",)],
             "hf_SECRET_token": "as a key too"}
    original = json.loads(json.dumps(value))
    assert redact(value, SECRETS) == {
        "env_vars": {"WANDB_API_KEY": REDACTED, "N": 3, "F": 1.5, "B": True, "Z": None},
        "args": ["--token", REDACTED, ("x *** y",)],
        REDACTED: "as a key too",
    }
    assert json.loads(json.dumps(value)) == original


def test_redact_finds_secrets_inside_json_text():
    secret = 'pa"ss\\word/é'
    text = json.dumps({"request": {"env": secret}})
    assert secret not in text  # escaped by JSON
    assert redact(text, {secret}) == '{"request": {"env": "***"}}'
    assert redact(json.dumps({"e": secret}, ensure_ascii=False), {secret}) == '{"e": "***"}'


def test_redact_a_multi_line_secret_also_line_by_line():
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nshort\n-----END KEY-----"
    assert redact(f"x{key}y", {key}) == "x***y"
    assert redact("line: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", {key}) == "line: ***"
    assert redact("short words stay", {key}) == "short words stay"  # lines under 8 characters are not secrets


def test_redact_longest_first_and_literally():
    assert redact("abcdef abc", {"abc", "abcdef"}) == "*** ***"
    assert redact("a.b*c and axbbbc", {"a.b*c"}) == "*** and axbbbc"


def test_redact_with_no_secrets_changes_nothing():
    value = {"a": ["b"]}
    assert redact(value, set()) is value
    assert redact("text", {""}) == "text"


# ---- redact_stream --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16, 1000])
def test_redact_stream_finds_secrets_split_across_chunks(size):
    text = "start wandb-0123456789abcdef mid hf_SECRET_tokenhf_SECRET_token end\nwandb-0123456789abcdef"
    chunks = [text[i:i + size] for i in range(0, len(text), size)]
    out = list(redact_stream(chunks, SECRETS))
    assert "".join(out) == redact(text, SECRETS)
    assert not any(secret[:4] in piece for piece in out for secret in SECRETS), out


def test_redact_stream_holds_back_only_what_may_start_a_secret():
    out = redact_stream(iter(["line one\n", "step 2 token=hf_SE", "CRET_token\n", "done h"]), {"hf_SECRET_token"})
    assert next(out) == "line one\n"  # nothing in it can start a secret: shown at once
    assert next(out) == "step 2 token="  # "hf_SE" waits for the rest
    assert next(out) == "***\n"
    assert next(out) == "done "  # "h" might start one
    assert list(out) == ["h"]  # the end of the stream releases it


def test_redact_stream_without_secrets_passes_chunks_through():
    assert list(redact_stream(["a", "b"], [])) == ["a", "b"]
