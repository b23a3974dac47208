"""Reading a job spec from YAML: strict parsing, ``--set`` overrides, and errors users can act on.

``core/spec.py`` says what a valid job is; this module says where a file went
wrong. The text is read by the hardened reader (``reader.py``), overridden
(``overrides.py``), validated by pydantic, and checked against its files
(``files.py``). Every problem becomes one line, ``FILE:LINE:COL: FIELD.PATH:
message`` (``messages.py``), and all of them are raised together in one
``SpecError``. Nothing here writes anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from orchestrator.core.errors import SpecError
from orchestrator.core.forms import ACCELERATOR_TYPES
from orchestrator.core.hardware import Accelerator
from orchestrator.core.spec import JobSpec, space_keys_problem
from orchestrator.load.files import check_environ, check_files
from orchestrator.load.messages import Report, mark_error, printable, report_validation
from orchestrator.load.overrides import apply_override
from orchestrator.load.requirements import check_pip
from orchestrator.load.reader import TAG, Builder, check_size, compose, measure, read_file


CATALOG_ONLY: Mapping[str, Accelerator] = {}  # the default: a type must be in orch's catalog


def load_spec(
    path: str | Path, overrides: Sequence[str] = (), environ: Mapping[str, str] | None = os.environ,
    types: Mapping[str, Accelerator] | None = CATALOG_ONLY,
) -> JobSpec:
    """Read, override, validate and check the job spec at ``path``.

    ``overrides`` are ``KEY=VALUE`` strings from ``--set`` (``resources.workers=4``),
    each VALUE read as YAML. ``working_dir`` is resolved against the YAML's folder
    and must exist; a ``FILE.py:FUNC`` entrypoint must name a file inside it, and
    no path may leave its root through a symlink. ``types`` are the accelerator types the spec
    may name beside the catalog's (``hardware.by_name`` of a cluster's custom types); None leaves
    types outside the catalog to the cluster the job goes to (``submit``, ``plan`` of a live
    cluster). Every ``{from_env: VAR}`` entry
    of ``env`` must name a variable set in ``environ`` (the submitter's
    environment; ``None`` skips that check). Returns the spec with
    ``working_dir`` made absolute. Raises ``SpecError`` listing every problem
    found, and creates nothing.
    """
    try:
        path = Path(path)
        text = read_file(path)
    except SpecError as error:
        raise printable(error) from None
    return validate_text(text, str(path), overrides, base_dir=path.absolute().parent, environ=environ, types=types)


def validate_text(
    text: str,
    source: str = "<string>",
    overrides: Sequence[str] = (),
    base_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    types: Mapping[str, Accelerator] | None = CATALOG_ONLY,
) -> JobSpec:
    """Validate spec ``text`` as if read from ``source``.

    Files are checked only when ``base_dir`` is given, ``from_env`` variables only
    when ``environ`` is. Problems never contain raw control characters, and at most
    ``MAX_PROBLEMS`` are listed.
    """
    try:
        return _validate(text, source, overrides, base_dir, environ, types)
    except SpecError as error:
        raise printable(error) from None


def _validate(text: str, source: str, overrides: Sequence[str], base_dir, environ, types) -> JobSpec:
    check_size(len(text.encode("utf-8", "replace")), source)
    report = Report()
    root = compose(text, source)
    if root is None or (isinstance(root, ScalarNode) and root.tag == TAG + "null"):
        raise SpecError([f"{source}:1:1: the file is empty; a job spec needs at least name and entrypoint"], source)
    if not isinstance(root, MappingNode):
        got = "a list" if isinstance(root, SequenceNode) else repr(root.value)
        message = f"the top level must be a mapping of fields (name: ..., entrypoint: ...), got {got}"
        raise mark_error(source, root.start_mark, message)
    measure(root, source)
    data = Builder(source, report).build(root, ())
    for item in overrides:
        apply_override(data, report.positions, item)
    spec = None
    try:
        spec = JobSpec.model_validate(data, context=None if types is None else {ACCELERATOR_TYPES: types})
    except ValidationError as exc:
        report_validation(exc, data, report)
        _check_space_keys(data, report)  # pydantic skips the model's own checks when a field fails
    folder = check_files(data, Path(base_dir), report) if base_dir is not None else None
    check_pip(data.get("pip"), folder, report)
    if environ is not None:
        check_environ(data, environ, report)
    if report.problems:
        raise SpecError(report.problems, source, report.details)
    return spec.model_copy(update={"working_dir": str(folder)}) if folder else spec


def _check_space_keys(data: dict, report: Report) -> None:
    sweep, config = data.get("sweep"), data.get("config", {})
    if isinstance(sweep, dict) and isinstance(sweep.get("space"), dict) and isinstance(config, dict):
        problem = space_keys_problem(sweep["space"], config)
        if problem and not report.covers(("sweep", "space")):
            report.at(("sweep", "space"), problem)
