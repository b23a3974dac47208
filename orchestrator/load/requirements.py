"""A job's ``pip:`` as pip will read it: each line's form checked without the network, and
the requirements file (``pip: requirements.txt``) read from working_dir.

Requirements are parsed with ``packaging`` (the PEP 508 parser pip vendors; Ray depends on
it, and orch names it in its own dependencies). Only the form is checked here: whether a
version exists is the index's answer, given when Ray builds the job's environment.

Ray installs the lines on every node of the job, in a virtualenv of its own (``pip install
-r`` run in a folder of Ray's): a path there is a path on the node, so it must be absolute,
and a nested ``-r`` file would not be there at all.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from orchestrator.core.errors import SpecError
from orchestrator.core.suggest import did_you_mean
from orchestrator.load.messages import Report

MAX_FILE_BYTES = 1024 * 1024  # a requirements file is text; anything larger is not one

# pip options a requirements file may carry (``pip install -r`` reads them per line).
_OPTIONS = ("--index-url", "-i", "--extra-index-url", "--find-links", "-f", "--trusted-host", "--pre",
            "--no-index", "--prefer-binary", "--only-binary", "--no-binary")
_NOT_SHIPPED = {
    "-r": "a nested requirements file is not on the cluster's nodes; list its lines here instead",
    "--requirement": "a nested requirements file is not on the cluster's nodes; list its lines here instead",
    "-c": "a constraints file is not on the cluster's nodes; pin the versions in these lines instead",
    "--constraint": "a constraints file is not on the cluster's nodes; pin the versions in these lines instead",
    "-e": "an editable install needs a source folder on every node; give the package's absolute path "
          "or URL without -e",
    "--editable": "an editable install needs a source folder on every node; give the package's absolute path "
                  "or URL without -e",
}
_URL = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*\+)?[A-Za-z][A-Za-z0-9+.-]*://")
_ONE_EQUALS = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*=\s*([0-9][^=<>!~;\s]*)$")
EXAMPLE = "such as einops, einops==0.8.0 or 'einops>=0.8; python_version >= \"3.10\"'"


def line_problem(line: str) -> str | None:
    """What is wrong with one requirement line (comments and blank lines are fine), or None."""
    text = strip_comment(line)
    if not text:
        return None
    if text.startswith("-"):
        return _option_problem(text)
    if _URL.match(text) or PurePosixPath(text).is_absolute():
        return None  # a URL or an absolute path: pip reads it on each node
    if text.startswith(".") or "/" in text.split(";")[0].split("@")[0]:
        return (f"{text!r} is a relative path, which pip would read in Ray's own folder on each node; "
                "write an absolute path that exists on every node, or a URL")
    # Imported here: most specs have no pip lines, and each `orch submit` is a process of its own.
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(text)
    except InvalidRequirement as error:
        return f"{text!r} is not a requirement: {_first_line(error)}; {_suggestion(text)}"
    return None


def strip_comment(line: str) -> str:
    """A line without its comment, as pip reads it: ``#`` at the start or after whitespace."""
    return re.sub(r"(^|\s)#.*$", "", line).strip()


def _option_problem(text: str) -> str | None:
    option = re.split(r"[\s=]", text, maxsplit=1)[0]
    short = option[:2] if not option.startswith("--") else option
    if short in _NOT_SHIPPED:
        return f"{option}: {_NOT_SHIPPED[short]}"
    if option not in _OPTIONS:
        return f"{option}: not a pip option a requirements line may carry{did_you_mean(option, list(_OPTIONS))}"
    return None


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0].rstrip(".")


def _suggestion(text: str) -> str:
    one = _ONE_EQUALS.match(text)
    if one:
        return f"did you mean {one.group(1)}=={one.group(2)}?"
    return f"write a package name with an optional version, {EXAMPLE}"


def check_pip(pip: object, folder: Path | None, report: Report) -> None:
    """Report every bad line of ``pip:``: a list's entries where they are, a requirements
    file's lines by their number. ``folder`` is the resolved working_dir (None: files are
    not read)."""
    if isinstance(pip, list):
        for index, line in enumerate(pip):
            if isinstance(line, str) and not report.covers(("pip", index)):
                problem = line_problem(line)
                if problem:
                    report.at(("pip", index), problem)
    elif isinstance(pip, str) and folder is not None and not report.covers(("pip",)):
        try:
            lines = read_lines(pip, folder)
        except ValueError as error:
            report.at(("pip",), str(error))
            return
        for number, line in lines:
            problem = line_problem(line)
            if problem:
                report.at(("pip",), f"{pip} line {number}: {problem}")


def read_lines(name: str, folder: Path) -> list[tuple[int, str]]:
    """(line number, line) of the requirements file ``name`` inside ``folder``, comments and
    blank lines left out. ValueError says why it cannot be read."""
    path = (folder / name).resolve()
    if not path.is_relative_to(folder):
        raise ValueError(f"{name!r} leads outside working_dir ({folder}) through a symlink (to {path}); "
                         "copy the file into working_dir")
    if not path.is_file():
        raise ValueError(f"requirements file {name!r} not found in working_dir ({folder})")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{name!r} is over {MAX_FILE_BYTES // 1024} KiB: not a requirements file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{name!r} is not UTF-8 text: not a requirements file") from None
    return [(number, strip_comment(line)) for number, line in enumerate(text.splitlines(), start=1)
            if strip_comment(line)]


def pip_lines(pip: list[str] | str, working_dir: str | Path) -> list[str]:
    """The lines Ray's ``pip`` installs for a validated spec (``working_dir`` absolute)."""
    if isinstance(pip, str):
        try:
            return [line for _, line in read_lines(pip, Path(working_dir).resolve())]
        except ValueError as error:  # changed since it was validated
            raise SpecError(f"pip: {error}") from None
    return [strip_comment(line) for line in pip if strip_comment(line)]
