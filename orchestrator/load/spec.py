"""Reading a job spec from YAML: strict parsing, ``--set`` overrides, and errors users can act on.

``core/spec.py`` says what a valid job is; this module says where a file went
wrong. The text is read by the hardened reader (``reader.py``) and overridden
(``overrides.py``) into a ``Draft`` (``draft.py``), validated by pydantic, and checked against
its files (``files.py``). Every problem becomes one line, ``FILE:LINE:COL: FIELD.PATH:
message`` (``messages.py``), and all of them are raised together in one
``SpecError``. Nothing here writes anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from orchestrator.core.errors import SpecError
from orchestrator.core.forms import ACCELERATOR_TYPES
from orchestrator.core.hardware import Accelerator
from orchestrator.core.spec import JobSpec, space_keys_problem
from orchestrator.load.draft import Draft, parse, read_draft
from orchestrator.load.messages import Report, printable
from orchestrator.load.validation import report_validation


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
    return _checked(read_draft(path, overrides), environ, types)


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
        return _checked(parse(text, source, overrides, base_dir), environ, types)
    except SpecError as error:
        raise printable(error) from None


def _checked(draft: Draft, environ: Mapping[str, str] | None, types: Mapping[str, Accelerator] | None) -> JobSpec:
    spec = check_model(draft, types)
    folder = draft.check_files(environ)
    draft.raise_problems()
    return spec.model_copy(update={"working_dir": str(folder)}) if folder else spec


def check_model(draft: Draft, types: Mapping[str, Accelerator] | None = None) -> JobSpec | None:
    """The spec the draft's fields make, or None with their problems in its report."""
    try:
        return JobSpec.model_validate(draft.data, context=None if types is None else {ACCELERATOR_TYPES: types})
    except ValidationError as exc:
        report_validation(exc, draft.data, draft.report)
        _check_space_keys(draft.data, draft.report)  # pydantic skips the model's own checks when a field fails
        return None


def check_sent(text: str, source: str, overrides: Sequence[str]) -> tuple[JobSpec | None, dict]:
    """What the control plane checks of a spec `orch submit` read: the models, with types
    outside the catalog left to the cluster. The spec (None if invalid) and the problems
    found, for the client's ``Report.take`` (it checks the files, which are on its side)."""
    try:
        draft = parse(text, source, overrides)
    except SpecError as error:
        raise printable(error) from None
    return check_model(draft), draft.report.to_json()


def _check_space_keys(data: dict, report: Report) -> None:
    sweep, config = data.get("sweep"), data.get("config", {})
    if isinstance(sweep, dict) and isinstance(sweep.get("space"), dict) and isinstance(config, dict):
        problem = space_keys_problem(sweep["space"], config)
        if problem and not report.covers(("sweep", "space")):
            report.at(("sweep", "space"), problem)
