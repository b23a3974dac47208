"""The job spec contract (SPEC.md section 1): what loads, what is refused, and how it is reported."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator.core.errors import SpecError
from orchestrator.core.forms import WorkerRange
from orchestrator.core.spec import JobSpec, json_schema
from orchestrator.load.reader import MAX_BYTES
from orchestrator.load.spec import load_spec, validate_text

DATA = Path(__file__).resolve().parents[1] / "data"
BASE = "name: demo\nentrypoint: train.py:train_loop\n"
SWEEP = "config: {lr: 0.1}\nsweep: {metric: val_loss, mode: min, space: {lr: {uniform: [0.01, 0.5]}}}\n"
GIB = 1024**3


def spec_of(extra: str = "", overrides: tuple[str, ...] = ()) -> JobSpec:
    return validate_text(BASE + extra, "job.yaml", overrides)


def _with(extra: str) -> str:
    """BASE plus ``extra``, where a top-level field in ``extra`` replaces BASE's."""
    fields = {line.split(":", 1)[0] for line in extra.splitlines()}
    kept = [line for line in BASE.splitlines() if line.split(":", 1)[0] not in fields]
    return "\n".join(kept) + "\n" + extra + "\n"


def problems_of(text: str, overrides: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(SpecError) as caught:
        validate_text(text, "job.yaml", overrides)
    assert caught.value.exit_code == 2
    return caught.value.problems


def one_problem(text: str, overrides: tuple[str, ...] = ()) -> str:
    problems = problems_of(text, overrides)
    assert len(problems) == 1, problems
    return problems[0]


# ---- defaults -------------------------------------------------------------------------

DEFAULTS = [
    (lambda s: s.framework, "torch"),
    (lambda s: s.working_dir, "."),
    (lambda s: s.config, {}),
    (lambda s: s.env, {}),
    (lambda s: s.resources.workers, WorkerRange(min=1, max=1)),
    (lambda s: s.resources.cpus, 1.0),
    (lambda s: s.resources.memory, 2 * GIB),
    (lambda s: str(s.resources.accelerator), "CPU"),
    (lambda s: s.resources.accelerator_memory, None),
    (lambda s: s.resources.placement, "pack"),
    (lambda s: s.precision, "auto"),
    (lambda s: s.init_from, None),
    (lambda s: s.hints.params, None),
    (lambda s: s.schedule.priority, 100),
    (lambda s: s.schedule.preemptible, False),
    (lambda s: s.schedule.queue, "default"),
    (lambda s: s.failure.max_failures, 2),
    (lambda s: s.checkpoint.keep, 2),
    (lambda s: s.checkpoint.metric, None),
    (lambda s: s.checkpoint.mode, "min"),
    (lambda s: s.sweep, None),
    (lambda s: s.predict, None),
]


@pytest.mark.parametrize("get, expected", DEFAULTS)
def test_defaults_when_fields_are_omitted(get, expected):
    assert get(spec_of()) == expected


def test_sweep_defaults():
    sweep = spec_of(SWEEP).sweep
    assert (sweep.samples, sweep.max_concurrent, sweep.search, sweep.scheduler) == (16, "auto", "random", "asha")


# ---- accepted values -----------------------------------------------------------------

VALID = [
    ("name: a", lambda s: s.name, "a"),
    ("name: digits-mlp-2", lambda s: s.name, "digits-mlp-2"),
    ("name: " + "a" * 63, lambda s: len(s.name), 63),
    ("framework: tensorflow", lambda s: s.framework, "tensorflow"),
    ("framework: jax", lambda s: s.framework, "jax"),
    ("entrypoint: src/train.py:main", lambda s: s.entrypoint, "src/train.py:main"),
    ("entrypoint: my_pkg.train:main", lambda s: s.entrypoint, "my_pkg.train:main"),
    ("env: {LOG_LEVEL: info, _X1: 'on'}", lambda s: s.env, {"LOG_LEVEL": "info", "_X1": "on"}),
    ("config: {lr: 0.01, layers: [1, 2], day: 2024-01-01}", lambda s: s.config,
     {"lr": 0.01, "layers": [1, 2], "day": "2024-01-01"}),
    ("config: {lr: 1e-4, steps: 1.0e4, tag: '1e-4'}", lambda s: s.config, {"lr": 1e-4, "steps": 1e4, "tag": "1e-4"}),
    ("resources: {workers: 4}", lambda s: s.resources.workers, WorkerRange(min=4, max=4)),
    ("resources: {workers: 2..8}", lambda s: s.resources.workers, WorkerRange(min=2, max=8)),
    ("resources: {workers: '1..1'}", lambda s: s.resources.workers.elastic, False),
    ("resources: {cpus: 0.5}", lambda s: s.resources.cpus, 0.5),
    ("resources: {cpus: 4}", lambda s: s.resources.cpus, 4.0),
    ("resources: {memory: 1KiB}", lambda s: s.resources.memory, 1024),
    ("resources: {memory: 512MiB}", lambda s: s.resources.memory, 512 * 1024**2),
    ("resources: {memory: 1.5GiB}", lambda s: s.resources.memory, int(1.5 * GIB)),
    ("resources: {memory: 1TiB}", lambda s: s.resources.memory, 1024**4),
    ("resources: {memory: 1KB}", lambda s: s.resources.memory, 1000),
    ("resources: {memory: 1MB}", lambda s: s.resources.memory, 10**6),
    ("resources: {memory: 16GB}", lambda s: s.resources.memory, 16 * 10**9),
    ("resources: {memory: 1TB}", lambda s: s.resources.memory, 10**12),
    ("resources: {memory: 4096}", lambda s: s.resources.memory, 4096),
    ("resources: {accelerator_memory: 16GiB}", lambda s: s.resources.accelerator_memory, 16 * GIB),
    ("resources: {placement: strict_spread}", lambda s: s.resources.placement, "strict_spread"),
    ("resources: {accelerator: CPU}", lambda s: str(s.resources.accelerator), "CPU"),
    ("resources: {accelerator: GPU:2}", lambda s: str(s.resources.accelerator), "GPU:2"),
    ("resources: {accelerator: a100:1}", lambda s: str(s.resources.accelerator), "A100:1"),
    ("resources: {accelerator: nvidia-a100:2}", lambda s: str(s.resources.accelerator), "A100:2"),
    ("resources: {accelerator: H100:8}", lambda s: str(s.resources.accelerator), "H100:8"),
    ("resources: {accelerator: TPU-v5e:4}", lambda s: str(s.resources.accelerator), "TPU-v5e:4"),
    ("resources: {accelerator: TPU-v4-16}", lambda s: s.resources.accelerator.options[0].slice.hosts, 2),
    ("resources: {accelerator: TPU-v5p-32}", lambda s: s.resources.accelerator.options[0].kind, "slice"),
    ("resources: {accelerator: auto}", lambda s: str(s.resources.accelerator), "auto"),
    ("resources: {accelerator: [H100:1, A100:1, GPU:1]}", lambda s: str(s.resources.accelerator),
     "[H100:1, A100:1, GPU:1]"),
    ("resources: {accelerator: {any_of: [A100:1, L4:1, TPU-v5e:1]}}",
     lambda s: s.resources.accelerator.ordered, False),
    ("precision: bf16", lambda s: s.precision, "bf16"),
    ("precision: fp16", lambda s: s.precision, "fp16"),
    ("precision: fp32", lambda s: s.precision, "fp32"),
    ("init_from: job:digits-mlp", lambda s: s.init_from, "job:digits-mlp"),
    ("hints: {params: 350M}", lambda s: s.hints.params, 350_000_000),
    ("hints: {params: 7B}", lambda s: s.hints.params, 7_000_000_000),
    ("hints: {params: 1000}", lambda s: s.hints.params, 1000),
    ("schedule: {priority: 0}", lambda s: s.schedule.priority, 0),
    ("schedule: {priority: 1000}", lambda s: s.schedule.priority, 1000),
    ("schedule: {preemptible: true, queue: research}", lambda s: s.schedule.queue, "research"),
    ("failure: {max_failures: -1}", lambda s: s.failure.max_failures, -1),
    ("failure: {max_failures: 0}", lambda s: s.failure.max_failures, 0),
    ("checkpoint: {keep: 1, metric: acc, mode: max}", lambda s: s.checkpoint.mode, "max"),
    (SWEEP, lambda s: s.sweep.space["lr"].uniform, [0.01, 0.5]),
    ("config: {lr: 0.1, bs: 32, h: 64, d: 0.1, n: 2}\n"
     "sweep:\n  metric: acc\n  mode: max\n  samples: 4\n  max_concurrent: 2\n  search: optuna\n"
     "  scheduler: pbt\n  space:\n    lr: {loguniform: [1.0e-4, 1.0e-1]}\n    bs: {choice: [32, 64]}\n"
     "    h: {randint: [32, 257]}\n    d: {uniform: [0.0, 0.5]}\n    n: {grid: [1, 2, 3]}",
     lambda s: (s.sweep.max_concurrent, s.sweep.space["h"].randint), (2, [32, 257])),
    ("predict: {model: job:digits-mlp, input: data/test.npz, output: out/p.npz}",
     lambda s: s.predict.output, "out/p.npz"),
]


@pytest.mark.parametrize("extra, get, expected", VALID)
def test_valid_field_values(extra, get, expected):
    assert get(validate_text(_with(extra))) == expected


@pytest.mark.parametrize("extra", [extra for extra, _, _ in VALID])
def test_valid_specs_round_trip(extra):
    spec = validate_text(_with(extra))
    assert JobSpec.model_validate(spec.model_dump(mode="json")) == spec


# ---- field constraints ----------------------------------------------------------------

INVALID = [
    # (yaml replacing or adding to BASE, field path named, words the message must contain)
    ("name: Demo", "name", "lowercase"),
    ("name: -demo", "name", "starting with a letter or digit"),
    ("name: my_job", "name", "'my_job'"),
    ("name: " + "a" * 64, "name", "at most 63"),
    ("name: 42", "name", "must be a string, got 42"),
    ("framework: pytorch", "framework", "must be one of torch, tensorflow, jax, got 'pytorch'; did you mean 'torch'?"),
    ("entrypoint: train.py", "entrypoint", "FILE.py:FUNC or package.module:FUNC"),
    ("entrypoint: 'train.py:'", "entrypoint", "FILE.py:FUNC"),
    ("entrypoint: 1pkg:main", "entrypoint", "'1pkg:main'"),
    ("env: {log_level: x}", "env.log_level", "upper-case letters"),
    ("env: {1X: x}", "env.1X", "not starting with a digit"),
    ("env: {LEVEL: 3}", "env.LEVEL", "must be a string, got 3"),
    ("env: [A]", "env", "must be a mapping, got ['A']"),
    ("config: [1, 2]", "config", "must be a mapping"),
    ("resources: {workers: 0}", "resources.workers", "at least 1"),
    ("resources: {workers: -2}", "resources.workers", "at least 1"),
    ("resources: {workers: two}", "resources.workers", "'two' is not a worker count"),
    ("resources: {workers: 1.5}", "resources.workers", "not a worker count"),
    ("resources: {workers: true}", "resources.workers", "not a worker count"),
    ("resources: {workers: 0..4}", "resources.workers", "minimum must be at least 1"),
    ("resources: {workers: 8..2}", "resources.workers", "write 2..8"),
    ("resources: {workers: 2-8}", "resources.workers", "MIN..MAX"),
    ("resources: {cpus: 0}", "resources.cpus", "must be greater than 0"),
    ("resources: {cpus: -1}", "resources.cpus", "must be greater than 0"),
    ("resources: {cpus: two}", "resources.cpus", "must be a number, got 'two'"),
    ("resources: {memory: 2XB}", "resources.memory", "KiB, MiB, GiB, TiB, KB, MB, GB or TB"),
    ("resources: {memory: GiB}", "resources.memory", "'GiB' is not a size"),
    ("resources: {memory: 0}", "resources.memory", "positive"),
    ("resources: {memory: 2 PiB}", "resources.memory", "not a size"),
    ("resources: {memory: [2GiB]}", "resources.memory", "not a size"),
    ("resources: {accelerator_memory: lots}", "resources.accelerator_memory", "not a size"),
    ("resources: {placement: scatter}", "resources.placement", "pack, spread, strict_pack, strict_spread"),
    ("resources: {accelerator: A1000:1}", "resources.accelerator", "did you mean A100"),
    ("resources: {accelerator: Z9:1}", "resources.accelerator", "unknown accelerator type 'Z9'"),
    ("resources: {accelerator: GPU:0}", "resources.accelerator", "at least 1"),
    ("resources: {accelerator: GPU:x}", "resources.accelerator", "TYPE:COUNT"),
    ("resources: {accelerator: TPU-v4-12}", "resources.accelerator", "power of two"),
    ("resources: {accelerator: TPU-v9-16}", "resources.accelerator", "unknown TPU generation"),
    ("resources: {accelerator: TPU-v5e:16}", "resources.accelerator", "whole slice"),
    ("resources: {accelerator: []}", "resources.accelerator", "empty"),
    ("resources: {accelerator: [auto, GPU:1]}", "resources.accelerator", "auto cannot be combined"),
    ("resources: {accelerator: [A100:1, A100:1]}", "resources.accelerator", "listed twice"),
    ("resources: {accelerator: [H100:1, Q100:1]}", "resources.accelerator", "'Q100'"),
    ("resources: {accelerator: {one_of: [A100:1]}}", "resources.accelerator", "any_of"),
    ("resources: {accelerator: 4}", "resources.accelerator", "4 is not an accelerator"),
    ("resources: 4", "resources", "must be a mapping, got 4"),
    ("precision: fp8", "precision", "must be one of auto, fp32, bf16, fp16, got 'fp8'"),
    ("hints: {params: lots}", "hints.params", "not a parameter count"),
    ("schedule: {priority: -1}", "schedule.priority", "must be at least 0, got -1"),
    ("schedule: {priority: 1001}", "schedule.priority", "must be at most 1000, got 1001"),
    ("schedule: {priority: high}", "schedule.priority", "must be an integer, got 'high'"),
    ("schedule: {priority: 1.5}", "schedule.priority", "must be an integer, got 1.5"),
    ("schedule: {preemptible: maybe}", "schedule.preemptible", "must be true or false, got 'maybe'"),
    ("schedule: {queue: Big Queue}", "schedule.queue", "lowercase"),
    ("failure: {max_failures: -2}", "failure.max_failures", "must be at least -1, got -2"),
    ("checkpoint: {keep: 0}", "checkpoint.keep", "must be at least 1, got 0"),
    ("checkpoint: {mode: lowest}", "checkpoint.mode", "must be one of min, max"),
    ("init_from: 5", "init_from", "must be a string, got 5"),
    (SWEEP.replace("metric: val_loss, ", ""), "sweep.metric", "required field is missing"),
    (SWEEP.replace("mode: min, ", ""), "sweep.mode", "required field is missing"),
    ("sweep: {metric: m, mode: min}", "sweep.space", "required field is missing"),
    ("sweep: {metric: m, mode: min, space: {}}", "sweep.space", "at least 1 item, got {}"),
    ("config: {lr: 0.1}\nsweep: {metric: m, mode: up, space: {lr: {uniform: [0, 1]}}}", "sweep.mode",
     "must be one of min, max"),
    (SWEEP.replace("space:", "samples: 0, space:"), "sweep.samples", "must be at least 1, got 0"),
    (SWEEP.replace("space:", "max_concurrent: 0, space:"), "sweep.max_concurrent",
     "must be 'auto' or an integer >= 1, got 0"),
    (SWEEP.replace("space:", "max_concurrent: many, space:"), "sweep.max_concurrent", "got 'many'"),
    (SWEEP.replace("space:", "search: bayes, space:"), "sweep.search", "random, grid, optuna, hyperopt"),
    (SWEEP.replace("space:", "scheduler: hyperband, space:"), "sweep.scheduler", "fifo, asha, pbt"),
    (SWEEP.replace("lr: {uniform", "dropout: {uniform"), "sweep.space", "'dropout' not in config (keys: lr)"),
    (SWEEP.replace("uniform: [0.01, 0.5]", "uniform: [0.5, 0.01]"), "sweep.space.lr",
     "low 0.5 must be below high 0.01"),
    (SWEEP.replace("uniform: [0.01, 0.5]", "loguniform: [0, 1]"), "sweep.space.lr", "must be positive"),
    (SWEEP.replace("[0.01, 0.5]", "[0.01]"), "sweep.space.lr.uniform", "at least 2 items"),
    (SWEEP.replace("[0.01, 0.5]", "[0.01, 0.2, 0.5]"), "sweep.space.lr.uniform", "at most 2 items"),
    (SWEEP.replace("uniform: [0.01, 0.5]", "randint: [1.5, 4]"), "sweep.space.lr.randint[0]", "must be an integer"),
    (SWEEP.replace("uniform: [0.01, 0.5]", "choice: []"), "sweep.space.lr.choice", "at least 1 item, got []"),
    (SWEEP.replace("uniform", "unifrom"), "sweep.space.lr", "did you mean 'uniform'?"),
    (SWEEP.replace("{uniform: [0.01, 0.5]}", "0.1"), "sweep.space.lr", "{uniform: [low, high]}, {loguniform: [low, high]}"),
    (SWEEP.replace("[0.01, 0.5]}", "[0.01, 0.5], grid: [1]}"), "sweep.space.lr",
     "got {'uniform': [0.01, 0.5], 'grid': [1]}"),
    ("predict: {input: a, output: b}", "predict.model", "required field is missing"),
    ("predict: {model: m, output: b}", "predict.input", "required field is missing"),
    ("predict: {model: m, input: a}", "predict.output", "required field is missing"),
    (SWEEP + "predict: {model: m, input: a, output: b}", "", "sweep and predict cannot both be present"),
]


@pytest.mark.parametrize("extra, field, words", INVALID)
def test_invalid_field_values(extra, field, words):
    problem = one_problem(_with(extra))
    assert f": {field}: " in problem if field else problem.startswith("job.yaml:")
    assert words in problem
    assert "pydantic" not in problem and "Input should" not in problem


# ---- document-level rejections ----------------------------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]\n" for prev, name in zip("abcdefgh", "bcdefghi")
)

REJECTED = [
    (BASE + "gpus: 2", "job.yaml:3:1: gpus: unknown field 'gpus'"),
    (BASE + "resources: {wrokers: 2}", "resources.wrokers: unknown field 'wrokers'; did you mean 'workers'?"),
    (BASE + "name: again", "job.yaml:3:1: name: duplicate key 'name' (first at line 1)"),
    (BASE + "config: {a: 1, a: 2}", "config.a: duplicate key 'a'"),
    (BASE + "config: !!python/object/apply:os.system ['true']", "tags such as '!!python/object/apply:os.system'"),
    (BASE + "config: !!python/name:os.system", "not allowed"),
    (BASE + "config: {a: !custom x}", "tags such as '!custom'"),
    ("name: !!str demo\nentrypoint: train.py:train_loop", "job.yaml:1:7: YAML tags such as '!!str'"),
    (BASE + "config: !!map {a: 1}", "'!!map'"),
    (BASE + "config: ! x", "tags"),
    (BASE + "---\nname: other\n", "job.yaml:3:1: a second YAML document"),
    ("---\n" + BASE + "...\n---\n", "second YAML document"),
    (BASE + "config: {lr: .inf}", "job.yaml:3:14: config.lr: must be a finite number, got '.inf'"),
    (BASE + "config: {lr: -.Inf}", "finite"),
    (BASE + "config: {lr: .NaN}", "finite"),
    (BASE + "config: {nested: [{x: [1, .nan]}]}", "config.nested[0].x[1]: must be a finite number"),
    (BASE + "config: {big: 1.0e+400}", "config.big: must be a finite number"),
    (BASE + "resources: {cpus: .inf}", "resources.cpus: must be a finite number"),
    ("", "the file is empty"),
    ("   \n\n", "the file is empty"),
    ("# only a comment\n", "the file is empty"),
    ("---\n", "the file is empty"),
    ("~\n", "the file is empty"),
    ("- name: demo\n", "job.yaml:1:1: the top level must be a mapping"),
    ("just text\n", "got 'just text'"),
    (BASE + "resources: {workers: 2", "job.yaml:3:23: invalid YAML: expected ',' or '}'"),
    ("name: demo\n  entrypoint: x\n", "job.yaml:2:13: invalid YAML: mapping values are not allowed here"),
    ("name: demo\n\tentrypoint: x\n", "invalid YAML"),
    (BASE + "config: *nowhere", "invalid YAML: found undefined alias"),
    ("name: demo\x07\n", "job.yaml:1:11: invalid YAML: character U+0007 is not allowed"),
    (BASE + "config:\n" + "".join("  " + line + "\n" for line in BOMB.splitlines()), "more than 100000 values"),
    (BASE + "config: &x {again: *x}", "nested deeper than 64 levels"),
    (BASE + "config: " + "[" * 80 + "]" * 80, "nested deeper than 64 levels"),
    (BASE + "config: {<<: {a: 1}}", "merge keys (<<) are not supported"),
    (BASE + "config: {1: a}", "a key must be a string, got 1; quote it: '1'"),
    (BASE + "env: {yes: a}", "a key must be a string, got True; quote it: 'yes'"),
    (BASE + "config: {[a]: 1}", "a key must be a string, got a list or mapping"),
    ("x" * (MAX_BYTES + 1), "larger than 1 MiB"),
]


@pytest.mark.parametrize("text, words", REJECTED)
def test_rejected_documents(text, words):
    assert any(words in problem for problem in problems_of(text)), problems_of(text)


def test_every_problem_is_reported_at_once_in_file_order():
    text = "name: Demo\nentrypoint: train.py:train_loop\nresources: {workers: 0, cpus: x}\nprecisoin: bf16\n"
    problems = problems_of(text)
    assert [p.split(": ", 2)[:2] for p in problems] == [
        ["job.yaml:1:7", "name"],
        ["job.yaml:3:22", "resources.workers"],
        ["job.yaml:3:31", "resources.cpus"],
        ["job.yaml:4:1", "precisoin"],
    ]
    assert "did you mean 'precision'?" in problems[3]


def test_every_bad_sweep_range_is_reported_at_once_with_its_own_message():
    text = ("name: demo\nentrypoint: train.py:train_loop\nconfig: {lr: 0.1, n: 3, d: 0.1}\n"
            "sweep:\n  metric: loss\n  mode: min\n  space:\n"
            "    lr: {uniform: [1.0, 0.1]}\n    n: {randint: [5, 5]}\n    d: {loguniform: [0.0, 1.0]}\n"
            "    e: {unifrom: [0.0, 1.0]}\n")
    assert [p.split(": ", 1)[1] for p in problems_of(text)] == [
        "sweep.space: 'e' not in config (keys: lr, n, d); add a default value to config",  # checked all the same
        "sweep.space.lr: low 1.0 must be below high 0.1",
        "sweep.space.n: low 5 must be below high 5",
        "sweep.space.d: loguniform bounds must be positive",
        "sweep.space.e: must be one mapping of {uniform: [low, high]}, {loguniform: [low, high]}, "
        "{randint: [low, high]}, {choice: [...]} or {grid: [...]}, got {'unifrom': [0.0, 1.0]}; "
        "did you mean 'uniform'?",
    ]


def test_missing_field_points_at_the_mapping_that_lacks_it():
    text = BASE + "config: {lr: 1}\nsweep:\n  mode: min\n  space: {lr: {uniform: [0, 1]}}\n"
    assert one_problem(text) == "job.yaml:5:3: sweep.metric: required field is missing"
    assert one_problem("name: demo\n") == "job.yaml:1:1: entrypoint: required field is missing"


def test_unknown_field_without_a_close_name_lists_the_allowed_ones():
    problem = one_problem(BASE + "checkpoint: {zzz: 1}")
    assert problem.endswith("unknown field 'zzz' (allowed: keep, metric, mode)")


def test_bad_key_points_at_the_key_and_bad_value_at_the_value():
    assert one_problem(BASE + "env: {bad-name: x}").startswith("job.yaml:3:7: env.bad-name:")
    assert one_problem(BASE + "env: {OK: 1}").startswith("job.yaml:3:11: env.OK:")


@pytest.mark.parametrize("extra", ["config: {lr: .inf}", "resources: {cpus: .nan}", "name: x"])
def test_one_message_per_field(extra):
    assert len(problems_of(BASE + extra)) == 1


def test_only_spec_errors_escape():
    for text, _ in REJECTED:
        with pytest.raises(SpecError):
            validate_text(text)


# ---- --set overrides -------------------------------------------------------------------

OVERRIDES = [
    ("resources.workers=4", lambda s: s.resources.workers, WorkerRange(min=4, max=4)),
    ("resources.workers=2..8", lambda s: s.resources.workers.max, 8),
    ("config.lr=0.1", lambda s: s.config["lr"], 0.1),
    ("config.layers=[1, 2]", lambda s: s.config["layers"], [1, 2]),
    ("config.opt.beta=0.9", lambda s: s.config["opt"], {"beta": 0.9}),
    ("name=other", lambda s: s.name, "other"),
    ("resources.accelerator=[H100:1, A100:1]", lambda s: str(s.resources.accelerator), "[H100:1, A100:1]"),
    ("init_from=", lambda s: s.init_from, None),
    ("schedule.preemptible=true", lambda s: s.schedule.preemptible, True),
    ("env.MODE='42'", lambda s: s.env, {"MODE": "42"}),
]


@pytest.mark.parametrize("override, get, expected", OVERRIDES)
def test_overrides(override, get, expected):
    assert get(spec_of(overrides=(override,))) == expected


def test_override_replaces_a_bad_value_and_later_overrides_win():
    spec = spec_of("resources: {workers: 0}", ("resources.workers=3", "resources.workers=5"))
    assert spec.resources.workers.max == 5


BAD_OVERRIDES = [
    ("resourcs.workers=4", "--set resourcs.workers=4: resourcs: unknown field 'resourcs'; did you mean 'resources'?"),
    ("resources.gpus=1", "--set resources.gpus=1: resources.gpus: unknown field 'gpus'; did you mean 'cpus'?"),
    ("resources.workers=0", "--set resources.workers=0: resources.workers: must be at least 1, got 0"),
    ("schedule.priority=high", "schedule.priority: must be an integer, got 'high'"),
    ("resources.workers", "write KEY=VALUE"),
    ("resources..workers=1", "write KEY=VALUE"),
    ("=1", "write KEY=VALUE"),
    ("name.first=x", "--set name.first=x: name: is not a mapping, so it has no field 'first'"),
    ("config.lr=.inf", "--set config.lr=.inf: config.lr: must be a finite number"),
    ("config.x=!!python/object:os.system x", "YAML tags"),
    ("config.x=[1", "invalid YAML"),
]


@pytest.mark.parametrize("override, words", BAD_OVERRIDES)
def test_bad_overrides(override, words):
    assert any(words in problem for problem in problems_of(BASE, (override,))), problems_of(BASE, (override,))


def test_override_problems_come_with_file_problems():
    problems = problems_of(BASE + "precision: fp8\n", ("resources.cpus=0",))
    assert problems[0].startswith("job.yaml:3:12: precision:")
    assert problems[1].startswith("--set resources.cpus=0: resources.cpus:")


# ---- files: load_spec -------------------------------------------------------------------


def _job(tmp_path: Path, text: str = BASE, name: str = "job.yaml") -> Path:
    (tmp_path / "train.py").write_text("def train_loop(config):\n    pass\n")
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_resolves_working_dir_against_the_yaml_folder(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    spec = load_spec(_job(tmp_path))
    assert spec.working_dir == str(tmp_path.resolve())


def test_load_subfolder_and_absolute_working_dir(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "pkg").mkdir()
    (src / "pkg" / "run.py").write_text("def main(config): pass\n")
    text = "name: demo\nentrypoint: pkg/run.py:main\nworking_dir: {}\n"
    assert load_spec(_job(tmp_path, text.format("src"))).working_dir == str(src.resolve())
    assert load_spec(_job(tmp_path, text.format(src.resolve()))).working_dir == str(src.resolve())


def test_load_does_not_look_for_module_entrypoints(tmp_path):
    assert load_spec(_job(tmp_path, "name: demo\nentrypoint: some.module:main\n")).entrypoint == "some.module:main"


@pytest.mark.parametrize("source,entry,needle", [
    ("def train_loop(config): pass\n", "train_lop", "'t.py' defines no top-level 'train_lop'; did you mean 'train_loop'?"),
    ("def f(:\n", "f", "'t.py' does not parse: line 1"),
    ("import math\n", "main", "'t.py' defines no top-level 'main'"),
])
def test_an_entry_file_must_define_the_function_it_names(tmp_path, source, entry, needle):
    (tmp_path / "t.py").write_text(source)
    with pytest.raises(SpecError) as raised:
        load_spec(_job(tmp_path, f"name: demo\nentrypoint: t.py:{entry}\n"))
    assert needle in str(raised.value)


@pytest.mark.parametrize("source", [
    "class Predictor:\n    pass\n", "from helpers import Predictor\n", "from helpers import *\n",
    "Predictor = make()\n", "import Predictor\n",
    "try:\n    from fast import Predictor\nexcept ImportError:\n    class Predictor: pass\n",
    "if True:\n    def Predictor(config): pass\n", "def __getattr__(name): return name\n",
])
def test_an_entry_defined_any_static_way_passes_unread_code_is_not_run(tmp_path, source):
    (tmp_path / "t.py").write_text(source + "raise SystemExit('ran')\n")
    assert load_spec(_job(tmp_path, "name: demo\nentrypoint: t.py:Predictor\n")).entrypoint == "t.py:Predictor"


def test_load_applies_overrides(tmp_path):
    assert load_spec(_job(tmp_path), ["resources.workers=3"]).resources.workers.max == 3


FILE_PROBLEMS = [
    ("working_dir: nowhere", "job.yaml:3:14: working_dir: 'nowhere' is not an existing folder"),
    ("working_dir: train.py", "working_dir: 'train.py' is not an existing folder"),
    ("working_dir: /no/such/folder", "'/no/such/folder' is not an existing folder"),
    ("entrypoint: missing.py:main", "job.yaml:2:13: entrypoint: file 'missing.py' not found in working_dir"),
    ("entrypoint: ../train.py:main", "entrypoint: '../train.py' must be a path inside working_dir"),
    ("entrypoint: /etc/train.py:main", "'/etc/train.py' must be a path inside working_dir"),
    ("entrypoint: link.py:main", "'link.py' leads outside working_dir"),
]


@pytest.mark.parametrize("extra, words", FILE_PROBLEMS)
def test_load_checks_files(tmp_path, extra, words):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.py").write_text("def main(config): pass\n")
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "link.py").symlink_to(outside / "evil.py")
    with pytest.raises(SpecError) as caught:
        load_spec(_job(tmp_path / "job", _with(extra)))
    assert any(words in p for p in caught.value.problems), caught.value.problems


def test_load_refuses_big_files_before_parsing(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_bytes(b"name: [" + b"x" * MAX_BYTES)
    with pytest.raises(SpecError, match="larger than 1 MiB"):
        load_spec(path)


def test_load_refuses_non_utf8_with_its_position(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_bytes(BASE.encode() + b"config: {note: caf\xe9}\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.problems == [f"{path}:3:19: byte 0xe9 is not UTF-8; save the file as UTF-8"]


@pytest.mark.parametrize("name", ["missing.yaml", "."])
def test_load_reports_unreadable_files(tmp_path, name):
    with pytest.raises(SpecError, match="cannot read the job spec"):
        load_spec(tmp_path / name)


def test_load_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _job(tmp_path, BASE + "resources: {workers: 0}\n")
    before = sorted(os.walk(tmp_path))
    with pytest.raises(SpecError):
        load_spec(tmp_path / "job.yaml")
    load_spec(_job(tmp_path))
    assert sorted(os.walk(tmp_path)) == before


# ---- fixtures in tests/data -----------------------------------------------------------------


def _expected() -> dict[str, str]:
    lines = (DATA / "invalid" / "expected.txt").read_text().splitlines()
    return dict(line.split("\t", 1) for line in lines if line.strip())


def test_every_invalid_fixture_has_an_expectation():
    files = {p.name for p in (DATA / "invalid").glob("*.yaml")}
    assert files == set(_expected()) and len(files) >= 25


@pytest.mark.parametrize("name, words", sorted(_expected().items()))
def test_invalid_fixtures(name, words):
    with pytest.raises(SpecError) as caught:
        load_spec(DATA / "invalid" / name)
    assert any(words in problem for problem in caught.value.problems), caught.value.problems


def test_valid_fixture():
    spec = load_spec(DATA / "valid" / "job.yaml")
    assert spec.name == "digits-mlp" and spec.working_dir == str(DATA / "valid")
    assert spec.sweep.space["batch_size"].choice == [32, 64, 128]
    assert JobSpec.model_validate(spec.model_dump(mode="json")) == spec


# ---- JSON schema -----------------------------------------------------------------------------


def test_json_schema_describes_every_field():
    schema = json.loads(json.dumps(json_schema()))
    assert set(schema["properties"]) == set(JobSpec.model_fields)
    assert set(schema["required"]) == {"name", "entrypoint"}
    assert schema["additionalProperties"] is False


def test_json_schema_is_valid_and_accepts_the_valid_fixture():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(json_schema())
    import yaml

    document = yaml.safe_load((DATA / "valid" / "job.yaml").read_text())
    jsonschema.Draft202012Validator(json_schema()).validate(document)
