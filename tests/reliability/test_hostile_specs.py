"""Hostile job specs (issue 9): each one is refused, fast, with one clear message, and leaves no trace.

For every case `orch validate FILE` must exit 2 within a second, print one line
that names the field (or the problem, for a file that is not a spec at all),
print no traceback and no raw control character, and create nothing: not in
the spec's folder, not in the working folder, not in HOME, and no ORCH_HOME.

Cases: the 44 fixtures of tests/data/invalid (every rejection of SPEC.md
section 1), the fixtures of tests/data/hostile (tags that run code, alias
tricks, terminal escapes, path escapes, secrets syntax, ...), and files made
here at test time (a 10 MB file, binary garbage, a billion laughs, 1 MiB of
nesting, a FIFO, symlinks out of the job's folder, ...).

Every case runs in-process through ``load_spec`` (milliseconds each). The nasty
ones, and a sample of the rest, also run as `orch validate` subprocesses whose
wall time is measured: the process start (~0.2 s) is part of the second. The
CPU time of every run must stay under the second, which no load on the machine
excuses. A run whose wall time is over is repeated (up to ATTEMPTS runs, the
fastest counts); if all are over while the machine is oversubscribed (load
average above its CPU count: another suite running Ray, say), the wall-time
check is skipped with the numbers, not failed.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from orchestrator.core.errors import SpecError
from orchestrator.load.messages import MAX_PROBLEMS
from orchestrator.load.spec import load_spec
from tests.conftest import record_figure

ORCH = str(Path(sys.executable).with_name("orch"))
DATA = Path(__file__).resolve().parents[1] / "data"
LIMIT_S = 1.0
# A run over the limit is repeated (at most this many runs in all) and the fastest counts:
# the bound is on what orch needs, not on how busy the test machine happens to be.
ATTEMPTS = 5
UNSET = "ORCH_TEST_UNSET_SECRET_7F3A"  # the variable hostile/33 reads; never set here
HEAD = "name: demo\nentrypoint: train.py:train_loop\n"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    id: str
    words: str  # the one message must contain this: the field path, or what is wrong with the file
    build: Callable[[Path], Path]  # writes the case under a fresh folder; returns the file to validate
    subprocess: bool = False  # also run as an `orch validate` subprocess, timed


# ---- fixtures from tests/data --------------------------------------------------------


def _expected(kind: str) -> dict[str, str]:
    lines = (DATA / kind / "expected.txt").read_text().splitlines()
    return dict(line.split("\t", 1) for line in lines if line.strip())


def _copied(kind: str, name: str) -> Callable[[Path], Path]:
    """The fixture copied next to a copy of tests/data/valid (fixtures say working_dir: ../valid)."""

    def build(root: Path) -> Path:
        shutil.copytree(DATA / "valid", root / "valid")
        (root / kind).mkdir()
        return Path(shutil.copyfile(DATA / kind / name, root / kind / name))

    return build


SUBPROCESS_FIXTURES = {
    ("invalid", name) for name in (
        "02_misspelled_field.yaml", "04_python_tag.yaml", "26_non_utf8.yaml", "27_alias_bomb.yaml",
        "30_too_deep.yaml", "41_recursive_alias.yaml",
    )
} | {
    ("hostile", name) for name in (
        "01_python_object_new.yaml", "08_quadratic_aliases.yaml", "10_terminal_escape_key.yaml",
        "13_utf16.yaml", "14_long_integer.yaml", "18_nul_in_working_dir.yaml", "33_env_missing_variable.yaml",
        "37_flow_bracket_flood.yaml",
    )
}

FIXTURES = [
    Case(f"{kind}/{name}", words, _copied(kind, name), (kind, name) in SUBPROCESS_FIXTURES)
    for kind in ("invalid", "hostile")
    for name, words in sorted(_expected(kind).items())
]


# ---- files made at test time -----------------------------------------------------------

GENERATED: list[Case] = []


def generated(words: str, subprocess: bool = True):
    def register(build: Callable[[Path], Path]) -> Callable[[Path], Path]:
        GENERATED.append(Case(build.__name__, words, build, subprocess))
        return build

    return register


def _job(root: Path, content: str | bytes, name: str = "job.yaml") -> Path:
    folder = root / "job"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_text("def train_loop(config):\n    pass\n")
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _outside(root: Path) -> Path:
    """A folder next to the job's, holding what a symlink should not reach."""
    outside = root / "outside"
    (outside / "ckpt").mkdir(parents=True)
    (outside / "evil.py").write_text("def train_loop(config):\n    pass\n")
    (outside / "train.py").write_text("def train_loop(config):\n    pass\n")
    return outside


@generated("larger than 1 MiB")
def ten_mb_file(root):
    return _job(root, HEAD + "config: {pad: '" + "x" * (10 * MIB) + "'}\n")


@generated("is not UTF-8")
def binary_garbage(root):
    return _job(root, random.Random(9).randbytes(64 * 1024))


@generated("character U+0000 is not allowed")
def nul_bytes(root):
    return _job(root, HEAD.encode() + b"config: {a: \x00\x00\x00}\n" + bytes(range(1, 32)))


@generated("character U+001B is not allowed")
def escape_in_a_large_file(root):  # over 16 KiB: libyaml reads it
    lines = "".join(f"  k{i}: {i}\n" for i in range(3000))
    return _job(root, HEAD + "config:\n" + lines + "  title: \x1b]0;pwned\x07\n")


@generated("expands to more than 100000 values")
def billion_laughs(root):
    lol = "  lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"  lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 10)}]\n" for i in range(1, 10)
    )
    return _job(root, HEAD + "config:\n" + lol)


@generated("expands to more than 100000 values")
def alias_bomb_of_mappings(root):
    keys = "abcdefghij"
    levels = "  m0: &m0 {" + ", ".join(f"{k}: 1" for k in keys) + "}\n" + "".join(
        f"  m{i}: &m{i} {{{', '.join(f'{k}: *m{i - 1}' for k in keys)}}}\n" for i in range(1, 8)
    )
    return _job(root, HEAD + "config:\n" + levels)


@generated("nest")  # libyaml's own limit (1000 levels) or ours (64), whichever meets it first
def one_mib_of_open_brackets(root):
    return _job(root, HEAD + "config: " + "[" * (MIB - 100))


@generated("nested deeper than 64 levels")
def deeply_nested_mappings(root):
    return _job(root, HEAD + "config: " + "{a: " * 200_000 + "1" + "}" * 200_000 + "\n")


@generated("nested deeper than 64 levels")
def deeply_indented_blocks(root):
    return _job(root, HEAD + "config:\n" + "".join(" " * i + "k:\n" for i in range(1, 900)) + " " * 900 + "k: 1\n")


@generated("more than 20000 keys and values")
def one_mib_of_values(root):
    return _job(root, HEAD + "config: {x: [" + "1," * ((MIB - 200) // 2) + "1]}\n")


@generated("invalid YAML")
def one_mib_of_text_then_a_syntax_error(root):
    return _job(root, HEAD + "config: {x: " + "a " * ((MIB - 200) // 2))


@generated("the file is empty")
def fifo_nobody_writes_to(root):
    path = root / "job" / "job.yaml"
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    return path


@generated("cannot read the job spec")
def a_folder(root):
    path = root / "job" / "job.yaml"
    path.mkdir(parents=True)
    return path


@generated("larger than 1 MiB")
def symlink_to_dev_zero(root):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    path = root / "job" / "job.yaml"
    path.parent.mkdir(parents=True)
    path.symlink_to("/dev/zero")
    return path


@generated("name")
def terminal_escape_in_the_file_name(root):
    return _job(root, "name: Bad\nentrypoint: train.py:train_loop\n", name="job\x1b[2J\x1b]0;pwned\x07.yaml")


@generated("working_dir")
def symlinked_working_dir_escaping_its_folder(root):
    outside = _outside(root)
    path = _job(root, HEAD + "working_dir: code\n")
    (path.parent / "code").symlink_to(outside)
    return path


@generated("working_dir")
def relative_symlinked_working_dir_escaping_its_folder(root):
    _outside(root)
    path = _job(root, HEAD + "working_dir: code\n")
    (path.parent / "code").symlink_to("../outside")
    return path


@generated("entrypoint")
def symlinked_entrypoint_escaping_working_dir(root):
    outside = _outside(root)
    path = _job(root, "name: demo\nentrypoint: link.py:train_loop\n")
    (path.parent / "link.py").symlink_to(outside / "evil.py")
    return path


@generated("init_from", subprocess=False)
def symlinked_init_from_escaping_working_dir(root):
    outside = _outside(root)
    path = _job(root, HEAD + "init_from: ckpt\n")
    (path.parent / "ckpt").symlink_to(outside / "ckpt")
    return path


@generated("predict.input", subprocess=False)
def symlinked_predict_input_escaping_working_dir(root):
    outside = _outside(root)
    path = _job(root, HEAD + "predict: {model: job:demo, input: data.npz, output: out/p.npz}\n")
    (path.parent / "data.npz").symlink_to(outside / "evil.py")
    return path


CASES = FIXTURES + GENERATED
SUBPROCESS_CASES = [case for case in CASES if case.subprocess]


# ---- the checks ----------------------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path):
    """Folders for one case: root (the spec and its files), cwd, home; ORCH_HOME must not appear."""
    paths = {name: tmp_path / name for name in ("root", "cwd", "home")}
    for path in paths.values():
        path.mkdir()
    paths["orch_home"] = tmp_path / "orch-home"
    return paths


def _tree(folder: Path) -> list[tuple]:
    """What is in ``folder``, without opening or following anything (a FIFO stays unread)."""
    found = []
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            info = os.lstat(os.path.join(top, name))
            found.append((os.path.relpath(os.path.join(top, name), folder), info.st_mode, info.st_size,
                          info.st_mtime_ns))
    return sorted(found)


def _snapshot(sandbox: dict) -> dict:
    return {name: _tree(sandbox[name]) for name in ("root", "cwd", "home")}


def _printable(text: str) -> bool:
    return all(c.isprintable() or c == "\n" for c in text)


def test_there_are_at_least_40_cases_and_every_fixture_is_listed():
    assert len(CASES) >= 40 + 44
    for kind in ("invalid", "hostile"):
        assert {p.name for p in (DATA / kind).glob("*.yaml")} == set(_expected(kind))
    assert len(SUBPROCESS_CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_refused_in_process(case, sandbox, monkeypatch):
    path = case.build(sandbox["root"])
    monkeypatch.chdir(sandbox["cwd"])
    monkeypatch.setenv("HOME", str(sandbox["home"]))
    monkeypatch.setenv("ORCH_HOME", str(sandbox["orch_home"]))
    monkeypatch.delenv(UNSET, raising=False)
    before = _snapshot(sandbox)

    start = time.perf_counter()
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    elapsed = time.perf_counter() - start

    problems = caught.value.problems
    assert caught.value.exit_code == 2
    assert len(problems) == 1, problems
    assert case.words in problems[0], problems
    assert _printable(problems[0]), problems
    assert elapsed < LIMIT_S, f"{elapsed:.2f} s"
    assert _snapshot(sandbox) == before
    assert not sandbox["orch_home"].exists()
    record_figure(f"hostile specs ({len(CASES)}): load_spec rejection time, s", round(elapsed, 4),
                  "< 1, one message naming the field, nothing created", True)


def _run_timed(args: list[str], env: dict, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run ARGS; return its result and the CPU time of that process alone. (RUSAGE_CHILDREN
    would also count any earlier child that Python's subprocess module reaps meanwhile, such
    as a `ray start` a test cluster left behind.)"""
    with subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        killer = threading.Timer(60, proc.kill)
        killer.start()
        with ThreadPoolExecutor(2) as pool:
            out, err = pool.submit(proc.stdout.read), pool.submit(proc.stderr.read)
            _, status, usage = os.wait4(proc.pid, 0)
            stdout, stderr = (part.result().decode("utf-8", errors="replace") for part in (out, err))
        killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: the context exit must not wait again
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr), usage.ru_utime + usage.ru_stime


def _orch_validate(path: Path, sandbox: dict) -> tuple[subprocess.CompletedProcess, float]:
    """``orch validate PATH`` as a user runs it: the result and wall time of the fastest of up
    to ATTEMPTS runs (each run's CPU time is checked here)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("ORCH_ADDRESS", UNSET, "FORCE_COLOR", "ORCH_DEBUG")}
    env.update(ORCH_HOME=str(sandbox["orch_home"]), HOME=str(sandbox["home"]), NO_COLOR="1",
               PYTHONDONTWRITEBYTECODE="1")
    best: tuple[subprocess.CompletedProcess, float] | None = None
    for _ in range(ATTEMPTS):
        start = time.perf_counter()
        result, cpu = _run_timed([ORCH, "validate", str(path)], env, sandbox["cwd"])
        elapsed = time.perf_counter() - start
        assert cpu < LIMIT_S, f"orch validate used {cpu:.2f} s of CPU"
        if best is None or elapsed < best[1]:
            best = (result, elapsed)
        if elapsed < LIMIT_S:
            break
        time.sleep(0.2)
    return best


def _within_a_second(elapsed: float) -> None:
    if elapsed < LIMIT_S:
        return
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load > cpus:
        pytest.skip(f"wall time not judged: best of {ATTEMPTS} runs took {elapsed:.2f} s with the machine "
                    f"oversubscribed (load {load:.1f} on {cpus} CPUs); CPU time was under {LIMIT_S} s")
    pytest.fail(f"orch validate took {elapsed:.2f} s (best of {ATTEMPTS} runs; load {load:.1f} on {cpus} CPUs)")


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=[case.id for case in SUBPROCESS_CASES])
def test_refused_by_orch_validate_within_a_second(case, sandbox):
    path = case.build(sandbox["root"])
    before = _snapshot(sandbox)

    result, elapsed = _orch_validate(path, sandbox)

    output = result.stdout + result.stderr
    lines = output.strip().splitlines()
    checks = {"exit 2": result.returncode == 2,
              "no traceback": "Traceback" not in output and "internal error" not in output,
              "one error line": len(lines) == 1 and lines[0].startswith("error: "),
              "names the problem": case.words in output, "printable": _printable(output),
              "nothing created": _snapshot(sandbox) == before and not sandbox["orch_home"].exists()}
    # Recorded before the asserts, so the table shows a miss as measured.
    record_figure(f"hostile specs ({len(SUBPROCESS_CASES)} nastiest): `orch validate` wall time, s",
                  round(elapsed, 3), "< 1, exit 2, no traceback, nothing created",
                  elapsed < LIMIT_S and all(checks.values()))
    assert all(checks.values()), ([name for name, held in checks.items() if not held], output)
    _within_a_second(elapsed)


def test_a_flood_of_problems_is_cut_short(sandbox):
    path = _job(sandbox["root"], HEAD + "config:\n" + "  k: 1\n" * 5000)
    before = _snapshot(sandbox)

    result, elapsed = _orch_validate(path, sandbox)

    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output
    lines = output.strip().splitlines()
    assert len(lines) == 1 + MAX_PROBLEMS + 1, output[-500:]  # heading, problems, "... and N more"
    assert "duplicate key 'k'" in lines[1] and lines[-1].strip().startswith("... and 4949 more problems")
    assert _snapshot(sandbox) == before and not sandbox["orch_home"].exists()
    _within_a_second(elapsed)


HOSTILE_OVERRIDES = [
    ("config.x=!!python/object/apply:os.system ['touch pwned']", "YAML tags"),
    ("config.x=" + "[" * 100 + "]" * 100, "nested deeper"),
    ("config.x=&a [*a]", "nested deeper"),
    ("config.x=" + "9" * 5000, "too long"),
    ("working_dir=/", "working_dir"),
    ("entrypoint=../../x.py:main", "entrypoint"),
    ("init_from=job:../../x", "init_from"),
    ("env.K={from_env: " + UNSET + ", secret: true}", "env.K.from_env"),
    ("name=\x1b[2Jx", "name"),
]


@pytest.mark.parametrize("override, words", HOSTILE_OVERRIDES)
def test_hostile_set_overrides(override, words, sandbox, monkeypatch):
    monkeypatch.delenv(UNSET, raising=False)
    path = _job(sandbox["root"], HEAD)
    before = _snapshot(sandbox)
    with pytest.raises(SpecError) as caught:
        load_spec(path, [override])
    problems = caught.value.problems
    assert len(problems) == 1 and words in problems[0] and _printable(problems[0]), problems
    assert _snapshot(sandbox) == before
