"""Reading a job spec from YAML: strict parsing, ``--set`` overrides, and errors users can act on.

``spec.py`` says what a valid job is; this module says where a file went wrong.
YAML is composed with PyYAML's safe loader into a node tree (never constructed
by a full loader), turned into plain values by hand so that every value keeps
its line and column, and then validated by pydantic. Every problem becomes
one line, ``FILE:LINE:COL: FIELD.PATH: message``, and all of them are raised
together in one ``SpecError``. Nothing here writes anywhere.
"""

from __future__ import annotations

import difflib
import math
import re
import types
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from orchestrator.errors import SpecError
from orchestrator.spec import ENTRYPOINT_PATTERN, ENV_NAME_PATTERN, NAME_PATTERN, JobSpec

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
# A real spec has a few hundred values; far more means aliases multiplying content.
MAX_NODES = 100_000

FieldPath = tuple  # a field path as pydantic spells it: ("resources", "workers"), ("sweep", "space", "lr")

_PATTERN_FORMS = {
    NAME_PATTERN: "lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters",
    ENTRYPOINT_PATTERN: "FILE.py:FUNC or package.module:FUNC, such as train.py:train_loop",
    ENV_NAME_PATTERN: "upper-case letters, digits and '_', not starting with a digit, such as LOG_LEVEL",
}
_TYPE_NAMES = {
    "string_type": "a string", "int_type": "an integer", "float_type": "a number",
    "bool_type": "true or false", "dict_type": "a mapping", "model_type": "a mapping",
    "model_attributes_type": "a mapping", "list_type": "a list",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "at least"), "greater_than": ("gt", "greater than"),
    "less_than_equal": ("le", "at most"), "less_than": ("lt", "less than"),
}
_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = {_TAG + name for name in ("null", "bool", "int", "float", "str")}
_CONSTRUCTOR = SafeConstructor()
_OPTION = "--set "


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> JobSpec:
    """Read, override, validate and check the job spec at ``path``.

    ``overrides`` are ``KEY=VALUE`` strings from ``--set`` (``resources.workers=4``),
    each VALUE read as YAML. ``working_dir`` is resolved against the YAML's folder
    and must exist; a ``FILE.py:FUNC`` entrypoint must name a file inside it.
    Returns the spec with ``working_dir`` made absolute. Raises ``SpecError``
    listing every problem found, and creates nothing.
    """
    path = Path(path)
    text = _read(path)
    return validate_text(text, str(path), overrides, base_dir=path.absolute().parent)


def validate_text(
    text: str, source: str = "<string>", overrides: Sequence[str] = (), base_dir: str | Path | None = None
) -> JobSpec:
    """Validate spec ``text`` as if read from ``source``; check files only when ``base_dir`` is given."""
    _check_size(len(text.encode("utf-8", "replace")), source)
    report = _Report()
    root = _compose(text, source)
    if root is None or (isinstance(root, ScalarNode) and root.tag == _TAG + "null"):
        raise SpecError([f"{source}:1:1: the file is empty; a job spec needs at least name and entrypoint"], source)
    if not isinstance(root, MappingNode):
        got = "a list" if isinstance(root, SequenceNode) else repr(root.value)
        message = f"the top level must be a mapping of fields (name: ..., entrypoint: ...), got {got}"
        raise _mark_error(source, root.start_mark, message)
    data = _Builder(source, report).build(root, ())
    for item in overrides:
        _apply_override(data, report.positions, item)
    spec = None
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        _report_validation(exc, data, report)
    folder = _check_files(data, Path(base_dir), report) if base_dir is not None else None
    if report.problems:
        raise SpecError(report.problems, source)
    return spec.model_copy(update={"working_dir": str(folder)}) if folder else spec


# ---- reading and composing ------------------------------------------------


def _read(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_BYTES + 1)  # never read more than the limit, whatever the file's size
    except OSError as exc:
        raise SpecError([f"{path}: cannot read the job spec: {exc.strerror or exc}"], str(path)) from None
    _check_size(len(raw), str(path))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _line_column(raw, exc.start)
        message = f"byte {raw[exc.start]:#04x} is not UTF-8; save the file as UTF-8"
        raise SpecError([f"{path}:{line}:{column}: {message}"], str(path)) from None


def _line_column(text: str | bytes, index: int) -> tuple[int, int]:
    newline = "\n" if isinstance(text, str) else b"\n"
    return text.count(newline, 0, index) + 1, index - text.rfind(newline, 0, index)


def _check_size(size: int, source: str) -> None:
    if size > MAX_BYTES:
        raise SpecError([f"{source}: the file is larger than 1 MiB; a job spec is a short YAML file"], source)


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing explicit tags and deep nesting while it composes."""

    def __init__(self, text: str, source: str):
        super().__init__(text)
        self.source, self.depth = source, 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if getattr(event, "tag", None) is not None:
            # Any tag can change what a value means (!!python/object runs code); none is needed.
            tag = event.tag.replace(_TAG, "!!", 1)
            raise _mark_error(self.source, event.start_mark, f"YAML tags such as {tag!r} are not allowed")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _mark_error(self.source, event.start_mark, f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


# YAML 1.1 reads 1e-4 and 1.0e4 as text; users (and YAML 1.2) mean numbers. This adds to
# _Loader's own copy of the resolvers, not to SafeLoader's.
_Loader.add_implicit_resolver(
    _TAG + "float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _compose(text: str, source: str) -> Node | None:
    """The one document in ``text`` as a node tree (None when there is none)."""
    loader = None
    try:
        loader = _Loader(text, source)  # reading starts here: it may refuse a character
        loader.get_event()  # stream start
        node = None if loader.check_event(yaml.StreamEndEvent) else loader.compose_document()
        if not loader.check_event(yaml.StreamEndEvent):
            mark = loader.peek_event().start_mark
            raise _mark_error(source, mark, "a second YAML document ('---'); a job spec is one document")
        return node
    except yaml.MarkedYAMLError as exc:
        context = f" ({exc.context})" if exc.context else ""
        message = f"invalid YAML: {exc.problem}{context}"
        raise _mark_error(source, exc.problem_mark or exc.context_mark, message) from None
    except yaml.reader.ReaderError as exc:
        line, column = _line_column(text, exc.position)
        message = f"invalid YAML: character U+{exc.character:04X} is not allowed"
        raise SpecError([f"{source}:{line}:{column}: {message}"], source) from None
    finally:
        if loader:
            loader.dispose()


def _mark_error(source: str, mark: yaml.Mark | None, message: str) -> SpecError:
    return SpecError([f"{_place(source, mark) if mark else source}: {message}"], source)


def _place(source: str, mark: yaml.Mark) -> str:
    if source.startswith(_OPTION):
        return source  # a --set option is one short line: naming it is enough
    return f"{source}:{mark.line + 1}:{mark.column + 1}"


def _line(where: str, path: FieldPath, message: str) -> str:
    dotted = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
    return f"{where}: {dotted}: {message}" if dotted else f"{where}: {message}"


class _Report:
    """Where each key and value was written, the problems found, and the fields they cover."""

    def __init__(self) -> None:
        self.positions: dict[FieldPath, tuple[str | None, str]] = {}  # path -> (key's place, value's)
        self.found: list[tuple[str, str]] = []
        self.paths: set[FieldPath] = set()

    def add(self, where: str, path: FieldPath, message: str, covers: bool = True) -> None:
        self.found.append((where, _line(where, path, message)))
        if covers and path:  # a problem with the whole document hides nothing else
            self.paths.add(path)

    def at(self, path: FieldPath, message: str, key: bool = False, place: FieldPath | None = None) -> None:
        """Report a problem with ``path``, placed at its key or value (or at ``place``'s value)."""
        self.add(self.where(path if place is None else place, key), path, message)

    def where(self, path: FieldPath, key: bool = False) -> str:
        """Position of ``path``'s key or value, else of its nearest written ancestor."""
        size = max(n for n in range(len(path) + 1) if path[:n] in self.positions)
        key_where, value_where = self.positions[path[:size]]
        return (key and size == len(path) and key_where) or value_where

    @property
    def problems(self) -> list[str]:
        """In file order, then those of ``--set`` options."""
        return [line for _, line in sorted(self.found, key=lambda found: _file_order(found[0]))]

    def covers(self, path: FieldPath) -> bool:
        return any(path[: len(done)] == done for done in self.paths)


class _Builder:
    """Turns a node tree into plain values, remembering where each key and value stands."""

    def __init__(self, source: str, report: _Report):
        self.source, self.report = source, report
        self.nodes = 0

    def where(self, node: Node) -> str:
        return _place(self.source, node.start_mark)

    def build(self, node: Node, path: FieldPath, depth: int = 1, key_where: str | None = None) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            message = f"the document expands to more than {MAX_NODES} values (YAML aliases?)"
            raise _mark_error(self.source, node.start_mark, message)
        if depth > MAX_DEPTH:  # aliases can nest a tree inside itself
            message = f"nested deeper than {MAX_DEPTH} levels (a recursive alias?)"
            raise _mark_error(self.source, node.start_mark, message)
        self.report.positions[path] = (key_where, self.where(node))
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        value = _scalar(node)
        if isinstance(value, float) and not math.isfinite(value):
            self.report.add(self.where(node), path, f"must be a finite number, got {node.value!r}")
        return value

    def _mapping(self, node: MappingNode, path: FieldPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in result:
                message = f"duplicate key {key!r} (first at line {first_line[key]})"
                self.report.add(self.where(key_node), (*path, key), message)
                continue
            first_line[key] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, (*path, key), depth + 1, self.where(key_node))
        return result

    def _key(self, node: Node, path: FieldPath) -> str | None:
        if node.tag == _TAG + "merge":
            message = "merge keys (<<) are not supported; write the fields out"
            self.report.add(self.where(node), path, message, covers=False)
            return None
        if not isinstance(node, ScalarNode):
            self.report.add(self.where(node), path, "a key must be a string, got a list or mapping", covers=False)
            return None
        value = _scalar(node)
        if not isinstance(value, str):
            message = f"a key must be a string, got {value!r}; quote it: '{node.value}'"
            self.report.add(self.where(node), path, message, covers=False)
            return None
        return value


def _file_order(where: str) -> tuple[int, int, int]:
    match = re.search(r":(\d+):(\d+)$", where)
    return (0, int(match.group(1)), int(match.group(2))) if match else (1, 0, 0)


def _scalar(node: ScalarNode) -> Any:
    # Timestamps and other exotic implicit types stay text: a spec holds only JSON-like values.
    if node.tag not in _PLAIN_TAGS:
        return node.value
    return _CONSTRUCTOR.yaml_constructors[node.tag](_CONSTRUCTOR, node)


# ---- overrides ---------------------------------------------------------------


def _apply_override(data: dict[str, Any], positions: dict, item: str) -> None:
    """Set one ``--set KEY=VALUE`` in ``data``; later problems with it point at the option."""
    where = _OPTION + item
    key, sep, text = item.partition("=")
    parts = tuple(key.strip().split("."))
    if not sep or not all(parts):
        raise SpecError([f"{where}: write KEY=VALUE with a dotted KEY, such as resources.workers=4"])
    report = _Report()
    node = _compose(text, where)
    value = None if node is None else _Builder(where, report).build(node, parts)
    if report.problems:
        raise SpecError(report.problems)
    target = data
    for depth, part in enumerate(parts[:-1]):
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            message = f"is not a mapping, so it has no field {parts[depth + 1]!r}"
            raise SpecError([_line(where, parts[: depth + 1], message)])
        positions.setdefault(parts[: depth + 1], (where, where))
    target[parts[-1]] = value
    for stale in [p for p in positions if p[: len(parts)] == parts]:
        del positions[stale]
    positions[parts] = (where, where)


# ---- pydantic errors to human ones -----------------------------------------------


class _Loc(NamedTuple):
    path: FieldPath  # the user's field path, without pydantic's union tags
    parent: type[BaseModel] | None  # the model holding the last field
    annotation: Any  # the type expected at path
    is_key: bool  # the error is about a mapping key, not its value
    union: tuple[FieldPath, Any] | None  # where a union was entered, and the union
    member: Any  # the union member this error is about


def _resolve(loc: tuple) -> _Loc:
    """Follow an error's location through the spec's types, setting pydantic's union tags aside."""
    path: list = []
    parent, annotation, union, member, is_key = None, JobSpec, None, None, False
    for segment in loc:
        annotation = _unwrap(annotation)
        if _is_union(annotation):
            union = union or (tuple(path), annotation)
            annotation = member = next((a for a in get_args(annotation) if getattr(a, "__name__", "") == segment), None)
        elif segment == "[key]":
            is_key = True
        else:
            path.append(segment)
            parent = annotation if _is_model(annotation) else None
            field = parent.model_fields.get(segment) if parent else None
            # dict[str, X] and list[X] both hold X last
            annotation = field.annotation if field else (get_args(annotation) or (None,))[-1]
    return _Loc(tuple(path), parent, _unwrap(annotation), is_key, union, member)


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``Optional``: neither adds a step to an error's location."""
    while get_origin(annotation) is Annotated or (_is_union(annotation) and type(None) in get_args(annotation)):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _report_validation(exc: ValidationError, data: dict, report: _Report) -> None:
    unions: dict[FieldPath, list] = {}
    for error in exc.errors(include_url=False):
        loc = _resolve(error["loc"])
        if loc.union:
            unions.setdefault(loc.union[0], []).append((error, loc))
        else:
            _report_one(error, loc, report)
    for path, errors in unions.items():
        _report_union(path, errors, _value_at(data, path), report)


def _report_one(error: dict, loc: _Loc, report: _Report) -> None:
    path, message = loc.path, _message(error, loc)
    prefix = re.match(r"([A-Za-z_][\w-]*(?:\.[\w-]+)*): (.*)", message, re.S)
    fields = getattr(loc.annotation, "model_fields", {})
    if error["type"] == "value_error" and prefix and prefix.group(1).split(".")[0] in fields:
        # A model-level check names the field it is about: point there.
        path, message = (*path, *prefix.group(1).split(".")), prefix.group(2)
    if report.covers(path):
        return
    if error["type"] == "missing":
        report.at(path, message, place=path[:-1])  # at the mapping that lacks it
    else:
        report.at(path, message, key=loc.is_key or error["type"] == "extra_forbidden")


def _message(error: dict, loc: _Loc) -> str:
    kind, ctx, got = error["type"], error.get("ctx") or {}, _show(error.get("input"))
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        names = list(loc.parent.model_fields) if loc.parent else []
        return f"unknown field {loc.path[-1]!r}{_did_you_mean(str(loc.path[-1]), names, listing=True)}"
    if kind == "literal_error":
        names = [str(v) for v in get_args(loc.annotation)]
        return f"must be one of {', '.join(names)}, got {got}{_did_you_mean(str(error['input']), names)}"
    if kind == "string_pattern_mismatch":
        return f"must be {_PATTERN_FORMS.get(ctx['pattern'], 'text matching ' + ctx['pattern'])}, got {got}"
    if kind in _TYPE_NAMES:
        return f"must be {_TYPE_NAMES[kind]}, got {got}"
    if kind in _BOUNDS:
        name, words = _BOUNDS[kind]
        return f"must be {words} {ctx[name]}, got {got}"
    if kind in ("too_short", "too_long"):
        words, count = ("at least", ctx["min_length"]) if kind == "too_short" else ("at most", ctx["max_length"])
        return f"must have {words} {count} item{'s' if count != 1 else ''}, got {got}"
    if kind == "value_error":
        return str(ctx["error"])
    return f"{error['msg'][:1].lower()}{error['msg'][1:]}, got {got}"


def _report_union(path: FieldPath, errors: list, value: Any, report: _Report) -> None:
    """The errors of the union member a value chose by its key, or one message naming every member."""
    keys = set(value) if isinstance(value, dict) else set()
    chosen = {loc.member for _, loc in errors if keys & set(getattr(loc.member, "model_fields", ()))}
    if len(chosen) == 1:
        for error, loc in errors:
            if loc.member in chosen:
                _report_one(error, loc._replace(union=None), report)
        return
    members = get_args(errors[0][1].union[1])
    keys = [name for member in members for name in getattr(member, "model_fields", ())]
    hint = _did_you_mean(next(iter(value)), keys) if isinstance(value, dict) and len(value) == 1 else ""
    forms = " or ".join(_describe(member) for member in members)
    if not report.covers(path):
        report.at(path, f"must be {forms}, got {_show(value)}{hint}")


def _describe(annotation: Any) -> str:
    """A union member as a user would write it: ``'auto'``, ``an integer >= 1``, ``{uniform: [...]}``."""
    if get_origin(annotation) is Literal:
        return " or ".join(repr(v) for v in get_args(annotation))
    if _is_model(annotation):
        return "{" + ", ".join(f"{name}: [...]" for name in annotation.model_fields) + "}"
    base, *metadata = get_args(annotation) if get_origin(annotation) is Annotated else (annotation,)
    bounds = [f" >= {m.ge}" for info in metadata for m in getattr(info, "metadata", [info]) if hasattr(m, "ge")]
    return {int: "an integer", float: "a number", str: "a string"}.get(base, str(base)) + "".join(bounds)


def _did_you_mean(word: str, names: list[str], listing: bool = False) -> str:
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (allowed: {', '.join(names)})" if listing and names else ""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _value_at(data: Any, path: FieldPath) -> Any:
    for part in path:
        data = data[part]
    return data


# ---- files -----------------------------------------------------------------------


def _check_files(data: dict, base_dir: Path, report: _Report) -> Path | None:
    """The resolved working_dir, after checking it and a FILE.py entrypoint inside it."""
    raw = data.get("working_dir", ".")
    if not isinstance(raw, str) or report.covers(("working_dir",)):
        return None  # already reported as the wrong type
    folder = (base_dir / raw).resolve()
    if not folder.is_dir():
        report.at(("working_dir",), f"{raw!r} is not an existing folder (looked at {folder})")
        return None
    entry = data.get("entrypoint")
    if isinstance(entry, str) and not report.covers(("entrypoint",)) and re.match(r"[^:]+\.py:", entry):
        problem = _entry_file_problem(entry.rsplit(":", 1)[0], folder)
        if problem:
            report.at(("entrypoint",), problem)
    return folder


def _entry_file_problem(name: str, folder: Path) -> str | None:
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts:
        return f"{name!r} must be a path inside working_dir ({folder}), without '..'"
    target = (folder / relative).resolve()
    if not target.is_relative_to(folder):
        return f"{name!r} leads outside working_dir ({folder}) through a symlink"
    if not target.is_file():
        return f"file {name!r} not found in working_dir ({folder})"
    return None
