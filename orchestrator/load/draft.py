"""A job spec read as far as it can be without its models: the hardened read, ``--set``
overrides, and the checks of its files and of the submitter's environment.

``spec.py`` adds the models (pydantic) between the two steps; `orch submit` leaves that step to
the control plane, which has the models loaded already, and takes its problems back into the
same ``Report``: one list, in file order, as if found here. Nothing here imports pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from orchestrator.core.errors import SpecError
from orchestrator.load.files import check_environ, check_files
from orchestrator.load.messages import Report, mark_error, printable
from orchestrator.load.overrides import apply_override
from orchestrator.load.reader import TAG, Builder, check_size, compose, measure, read_file
from orchestrator.load.requirements import check_pip


@dataclass
class Draft:
    """A spec's text, where it came from, and its fields as written (overrides applied)."""

    text: str
    source: str
    overrides: tuple[str, ...]
    base_dir: Path | None  # where working_dir is read from; None: files are not checked
    data: dict = field(default_factory=dict)
    report: Report = field(default_factory=Report)

    def check_files(self, environ: Mapping[str, str] | None) -> Path | None:
        """Check working_dir, the entry file, ``pip:`` and ``from_env`` variables (after the
        models' problems are in the report: a field they cover is not reported twice). The
        resolved working_dir, when it is one."""
        folder = check_files(self.data, self.base_dir, self.report) if self.base_dir is not None else None
        check_pip(self.data.get("pip"), folder, self.report)
        if environ is not None:
            check_environ(self.data, environ, self.report)
        return folder

    def raise_problems(self) -> None:
        """SpecError listing every problem found, if any was."""
        if self.report.problems:
            raise printable(SpecError(self.report.problems, self.source, self.report.details))


def read_draft(path: str | Path, overrides: Sequence[str] = ()) -> Draft:
    """The spec file at ``path`` read and overridden; working_dir is read from its folder."""
    try:
        path = Path(path)
        text = read_file(path)
        return parse(text, str(path), overrides, path.absolute().parent)
    except SpecError as error:
        raise printable(error) from None


def parse(text: str, source: str, overrides: Sequence[str] = (), base_dir: str | Path | None = None) -> Draft:
    """``text`` as a mapping of fields with where each was written, ``overrides`` applied.
    SpecError for what leaves nothing to check further: bad YAML, not a mapping, too large."""
    check_size(len(text.encode("utf-8", "replace")), source)
    draft = Draft(text, source, tuple(overrides), None if base_dir is None else Path(base_dir))
    root = compose(text, source)
    if root is None or (isinstance(root, ScalarNode) and root.tag == TAG + "null"):
        raise SpecError([f"{source}:1:1: the file is empty; a job spec needs at least name and entrypoint"], source)
    if not isinstance(root, MappingNode):
        got = "a list" if isinstance(root, SequenceNode) else repr(root.value)
        message = f"the top level must be a mapping of fields (name: ..., entrypoint: ...), got {got}"
        raise mark_error(source, root.start_mark, message)
    measure(root, source)
    draft.data = Builder(source, draft.report).build(root, ())
    for item in overrides:
        apply_override(draft.data, draft.report.positions, item)
    return draft
