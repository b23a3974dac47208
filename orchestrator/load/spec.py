"""Reading a job spec from YAML: strict parsing, ``--set`` overrides, and errors users can act on.

``spec.py`` says what a valid job is; this module says where a file went wrong.
YAML is composed with PyYAML's safe loader into a node tree (never constructed
by a full loader), turned into plain values by hand so that every value keeps
its line and column, and then validated by pydantic. Every problem becomes
one line, ``FILE:LINE:COL: FIELD.PATH: message``, and all of them are raised
together in one ``SpecError``. Nothing here writes anywhere.

Hostile input is bounded: at most 1 MiB is read (a FIFO cannot block it),
files over 16 KiB are parsed by libyaml (PyYAML's pure-Python scanner needs
about a second a MiB), composition stops at 20,000 nodes or 64 levels, and
alias expansion (at most 100,000 values) is measured once per node before any
value is built.
"""

from __future__ import annotations

import ast
import difflib
import math
import os
import re
import stat
import types
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Tag, ValidationError
from yaml.composer import Composer, ComposerError
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, ScalarEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from orchestrator.core.errors import SpecError
from orchestrator.core.spec import (
    DISTRIBUTION_ERROR,
    DISTRIBUTION_KINDS,
    ENTRYPOINT_PATTERN,
    ENV_NAME_PATTERN,
    NAME_PATTERN,
    SUBMITTER_ENV_PATTERN,
    JobSpec,
    space_keys_problem,
)

try:  # libyaml: PyYAML's C scanner and parser, when PyYAML was built with it
    from yaml._yaml import CParser as _CParser
except ImportError:  # pragma: no cover - PyYAML without libyaml
    _CParser = None

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
# A real spec has a few hundred values. As written, a file may hold MAX_WRITTEN_NODES
# (keys included: composing them is the costly step); aliases may expand it to MAX_NODES.
MAX_WRITTEN_NODES = 20_000
MAX_NODES = 100_000
# Up to this size the pure-Python parser reads the spec (its messages are the most
# precise); above it, libyaml does, so that a 1 MiB file takes milliseconds, not a second.
PYTHON_PARSER_BYTES = 16 * 1024
# Numbers longer than this are refused before Python converts them (int() of a
# 5,000-digit string raises, and a 100,000-digit hex literal makes repr() raise).
MAX_NUMBER_CHARS = 128
# Problems listed in one error; a hostile file can have 50,000 duplicate keys.
MAX_PROBLEMS = 50

FieldPath = tuple  # a field path as pydantic spells it: ("resources", "workers"), ("sweep", "space", "lr")

_PATTERN_FORMS = {
    NAME_PATTERN: "lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters",
    ENTRYPOINT_PATTERN: "FILE.py:FUNC or package.module:FUNC, such as train.py:train_loop",
    ENV_NAME_PATTERN: "upper-case letters, digits and '_', not starting with a digit, such as LOG_LEVEL",
    SUBMITTER_ENV_PATTERN: "letters, digits and '_', not starting with a digit, such as WANDB_API_KEY",
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


def load_spec(
    path: str | Path, overrides: Sequence[str] = (), environ: Mapping[str, str] | None = os.environ
) -> JobSpec:
    """Read, override, validate and check the job spec at ``path``.

    ``overrides`` are ``KEY=VALUE`` strings from ``--set`` (``resources.workers=4``),
    each VALUE read as YAML. ``working_dir`` is resolved against the YAML's folder
    and must exist; a ``FILE.py:FUNC`` entrypoint must name a file inside it, and
    no path may leave its root through a symlink. Every ``{from_env: VAR}`` entry
    of ``env`` must name a variable set in ``environ`` (the submitter's
    environment; ``None`` skips that check). Returns the spec with
    ``working_dir`` made absolute. Raises ``SpecError`` listing every problem
    found, and creates nothing.
    """
    try:
        path = Path(path)
        text = _read(path)
    except SpecError as error:
        raise _printable(error) from None
    return validate_text(text, str(path), overrides, base_dir=path.absolute().parent, environ=environ)


def validate_text(
    text: str,
    source: str = "<string>",
    overrides: Sequence[str] = (),
    base_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> JobSpec:
    """Validate spec ``text`` as if read from ``source``.

    Files are checked only when ``base_dir`` is given, ``from_env`` variables only
    when ``environ`` is. Problems never contain raw control characters, and at most
    ``MAX_PROBLEMS`` are listed.
    """
    try:
        return _validate(text, source, overrides, base_dir, environ)
    except SpecError as error:
        raise _printable(error) from None


def _validate(text: str, source: str, overrides: Sequence[str], base_dir, environ) -> JobSpec:
    _check_size(len(text.encode("utf-8", "replace")), source)
    report = _Report()
    root = _compose(text, source)
    if root is None or (isinstance(root, ScalarNode) and root.tag == _TAG + "null"):
        raise SpecError([f"{source}:1:1: the file is empty; a job spec needs at least name and entrypoint"], source)
    if not isinstance(root, MappingNode):
        got = "a list" if isinstance(root, SequenceNode) else repr(root.value)
        message = f"the top level must be a mapping of fields (name: ..., entrypoint: ...), got {got}"
        raise _mark_error(source, root.start_mark, message)
    _measure(root, source)
    data = _Builder(source, report).build(root, ())
    for item in overrides:
        _apply_override(data, report.positions, item)
    spec = None
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        _report_validation(exc, data, report)
        _check_space_keys(data, report)  # pydantic skips the model's own checks when a field fails
    folder = _check_files(data, Path(base_dir), report) if base_dir is not None else None
    if environ is not None:
        _check_environ(data, environ, report)
    if report.problems:
        raise SpecError(report.problems, source)
    return spec.model_copy(update={"working_dir": str(folder)}) if folder else spec


# ---- reading and composing ------------------------------------------------


def _read(path: Path) -> str:
    try:
        # O_NONBLOCK: opening a FIFO that nobody writes to returns at once (reading it then
        # finds the end) instead of waiting forever. Reads are blocking again after that.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as stream:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise IsADirectoryError(21, "Is a directory")
            os.set_blocking(fd, True)
            raw = stream.read(MAX_BYTES + 1)  # never read more than the limit, whatever the file's size
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or exc
        raise SpecError([f"{path}: cannot read the job spec: {reason}"], str(path)) from None
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


class _Guarded:
    """Composition that refuses explicit tags, deep nesting and too many nodes as it goes.

    ``compose_node`` is PyYAML's own, with the guards added and the path resolvers
    (which a spec never uses) left out: it runs once per node, so it is kept lean.
    """

    source: str
    depth: int
    nodes: int

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, AliasEvent):  # adds no node; what it expands to is measured later
            self.get_event()
            if event.anchor not in self.anchors:
                raise ComposerError(None, None, f"found undefined alias {event.anchor!r}", event.start_mark)
            return self.anchors[event.anchor]
        if event.tag is not None:
            # Any tag can change what a value means (!!python/object runs code); none is needed.
            tag = event.tag.replace(_TAG, "!!", 1)
            raise _mark_error(self.source, event.start_mark, f"YAML tags such as {tag!r} are not allowed")
        self.nodes += 1
        if self.nodes > MAX_WRITTEN_NODES:
            message = f"the document has more than {MAX_WRITTEN_NODES} keys and values; a job spec is short"
            raise _mark_error(self.source, event.start_mark, message)
        anchor = event.anchor
        if anchor is not None and anchor in self.anchors:
            raise ComposerError(f"found duplicate anchor {anchor!r}; first occurrence",
                                self.anchors[anchor].start_mark, "second occurrence", event.start_mark)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _mark_error(self.source, event.start_mark, f"nested deeper than {MAX_DEPTH} levels")
        try:
            if isinstance(event, ScalarEvent):
                return self.compose_scalar_node(anchor)
            if isinstance(event, SequenceStartEvent):
                return self.compose_sequence_node(anchor)
            return self.compose_mapping_node(anchor)
        finally:
            self.depth -= 1


class _Loader(_Guarded, yaml.SafeLoader):
    """PyYAML's pure-Python safe loader, guarded."""

    def __init__(self, text: str, source: str):
        yaml.SafeLoader.__init__(self, text)
        self.source, self.depth, self.nodes = source, 0, 0


# YAML 1.1 reads 1e-4 and 1.0e4 as text; users (and YAML 1.2) mean numbers. This adds to
# the loaders' own copies of the resolvers, not to SafeLoader's.
_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver(_TAG + "float", _FLOAT, list("-+0123456789"))

if _CParser is not None:

    class _FastLoader(_Guarded, Composer, _CParser, Resolver):
        """libyaml's scanner and parser with the same Python composer, resolvers and guards."""

        def __init__(self, text: str, source: str):
            _CParser.__init__(self, text)
            Composer.__init__(self)
            Resolver.__init__(self)
            self.source, self.depth, self.nodes = source, 0, 0

    _FastLoader.add_implicit_resolver(_TAG + "float", _FLOAT, list("-+0123456789"))


def _compose(text: str, source: str) -> Node | None:
    """The one document in ``text`` as a node tree (None when there is none)."""
    fast = _CParser is not None and len(text) > PYTHON_PARSER_BYTES
    loader = None
    try:
        loader = (_FastLoader if fast else _Loader)(text, source)  # reading starts here: it may refuse a character
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
        # libyaml counts bytes of UTF-8, PyYAML characters
        index = len(text.encode()[: exc.position].decode("utf-8", "ignore")) if fast else exc.position
        line, column = _line_column(text, index)
        message = f"invalid YAML: character U+{exc.character:04X} is not allowed"
        raise SpecError([f"{source}:{line}:{column}: {message}"], source) from None
    finally:
        if loader:
            loader.dispose()


def _measure(root: Node, source: str) -> None:
    """Refuse a tree whose aliases expand past MAX_NODES values or MAX_DEPTH levels.

    Each node is measured once (aliases share nodes), so a "billion laughs" costs
    as much as its text, not its expansion. Counts what ``_Builder`` builds:
    values, not mapping keys.
    """
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels)
    active: set[int] = set()

    def visit(node: Node, depth: int) -> tuple[int, int]:
        known = measured.get(id(node))
        deepest = depth + (known[1] - 1 if known else 0)
        if id(node) in active or deepest > MAX_DEPTH:  # in active: the node contains itself
            message = f"nested deeper than {MAX_DEPTH} levels (a recursive alias?)"
            raise _mark_error(source, node.start_mark, message)
        if known:
            return known
        if isinstance(node, MappingNode):
            children = [value for _, value in node.value]
        else:
            children = node.value if isinstance(node, SequenceNode) else []
        active.add(id(node))
        values, levels = 1, 1
        for child in children:
            child_values, child_levels = visit(child, depth + 1)
            values, levels = values + child_values, max(levels, child_levels + 1)
            if values > MAX_NODES:
                message = f"the document expands to more than {MAX_NODES} values (YAML aliases?)"
                raise _mark_error(source, child.start_mark, message)
        active.discard(id(node))
        measured[id(node)] = (values, levels)
        return values, levels

    visit(root, 1)


def _printable(error: SpecError) -> SpecError:
    """The same error with control characters escaped and at most MAX_PROBLEMS lines.

    A problem quotes what the user wrote (keys, values, file names): an escape
    sequence there must not reach the terminal, and a newline must not split a
    problem in two.
    """
    problems = [_escape(problem) for problem in error.problems]
    if len(problems) > MAX_PROBLEMS:
        hidden = len(problems) - MAX_PROBLEMS
        problems = problems[:MAX_PROBLEMS] + [f"... and {hidden} more problems; fix the ones above first"]
    if problems == error.problems:
        return error
    return SpecError(problems, error.source and _escape(error.source))


def _escape(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


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
        # path -> (key's place, value's): "FILE:LINE:COL" or (source, yaml mark) to format later
        self.positions: dict[FieldPath, tuple[Any, Any]] = {}
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
        place = (key and size == len(path) and key_where) or value_where
        return place if isinstance(place, str) else _place(*place)

    @property
    def problems(self) -> list[str]:
        """In file order, then those of ``--set`` options."""
        return [line for _, line in sorted(self.found, key=lambda found: _file_order(found[0]))]

    def covers(self, path: FieldPath) -> bool:
        return any(path[: len(done)] == done for done in self.paths)

    def touches(self, path: FieldPath) -> bool:
        """Whether a problem was reported at ``path``, inside it, or above it."""
        return any(path[: len(done)] == done or done[: len(path)] == path for done in self.paths)


class _Builder:
    """Turns a node tree into plain values, remembering where each key and value stands."""

    def __init__(self, source: str, report: _Report):
        self.source, self.report = source, report
        self.nodes = 0
        self.scalars: dict[int, Any] = {}  # id(node) -> its value: an alias repeats a node many times

    def where(self, node: Node) -> str:
        return _place(self.source, node.start_mark)

    def build(self, node: Node, path: FieldPath, depth: int = 1, key_where: Any = None) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            message = f"the document expands to more than {MAX_NODES} values (YAML aliases?)"
            raise _mark_error(self.source, node.start_mark, message)
        if depth > MAX_DEPTH:  # aliases can nest a tree inside itself
            message = f"nested deeper than {MAX_DEPTH} levels (a recursive alias?)"
            raise _mark_error(self.source, node.start_mark, message)
        self.report.positions[path] = (key_where, (self.source, node.start_mark))  # formatted when needed
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if id(node) in self.scalars:
            return self.scalars[id(node)]
        try:
            value = _scalar(node)
        except ValueError as error:
            self.report.add(self.where(node), path, str(error))
            return node.value
        if isinstance(value, float) and not math.isfinite(value):
            self.report.add(self.where(node), path, f"must be a finite number, got {node.value!r}")
        else:
            self.scalars[id(node)] = value
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
            result[key] = self.build(value_node, (*path, key), depth + 1, (self.source, key_node.start_mark))
        return result

    def _key(self, node: Node, path: FieldPath) -> str | None:
        if node.tag == _TAG + "merge":
            message = "merge keys (<<) are not supported; write the fields out"
            self.report.add(self.where(node), path, message, covers=False)
            return None
        if not isinstance(node, ScalarNode):
            self.report.add(self.where(node), path, "a key must be a string, got a list or mapping", covers=False)
            return None
        try:
            value = self.scalars[id(node)] if id(node) in self.scalars else _scalar(node)
        except ValueError as error:
            self.report.add(self.where(node), path, f"a key must be a string: {error}", covers=False)
            return None
        if not isinstance(value, str):
            message = f"a key must be a string, got {value!r}; quote it: '{node.value}'"
            self.report.add(self.where(node), path, message, covers=False)
            return None
        self.scalars[id(node)] = value
        return value


def _file_order(where: str) -> tuple[int, int, int]:
    match = re.search(r":(\d+):(\d+)$", where)
    return (0, int(match.group(1)), int(match.group(2))) if match else (1, 0, 0)


def _scalar(node: ScalarNode) -> Any:
    """The plain value of a scalar; ValueError, with a message for users, for an overlong number."""
    # Timestamps and other exotic implicit types stay text: a spec holds only JSON-like values.
    if node.tag not in _PLAIN_TAGS:
        return node.value
    if node.tag == _TAG + "int" and len(node.value) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(node.value)} characters is too long; quote it to use it as text")
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
    if node is not None:
        _measure(node, where)
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
        if segment == "[key]":  # a mapping's key: before the union its values may be
            is_key = True
        elif _is_union(annotation):
            union = union or (tuple(path), annotation)
            annotation = member = next((a for a in get_args(annotation) if _member_name(a) == segment), None)
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


def _member_name(annotation: Any) -> str:
    """How pydantic names a union member in an error's location: its Tag, else its class name."""
    if get_origin(annotation) is Annotated:
        tags = [m.tag for m in annotation.__metadata__ if isinstance(m, Tag)]
        if tags:
            return tags[0]
    return getattr(annotation, "__name__", "")


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _report_validation(exc: ValidationError, data: dict, report: _Report) -> None:
    unions: dict[FieldPath, list] = {}
    errors = exc.errors(include_url=False)
    suggested = _suggested_fields(errors)
    for error in errors:
        loc = _resolve(error["loc"])
        if error["type"] == "missing" and loc.path in suggested:
            continue  # the misspelled key's "did you mean" already names this field
        if loc.union:
            unions.setdefault(loc.union[0], []).append((error, loc))
        else:
            _report_one(error, loc, report)
    for path, errors in unions.items():
        _report_union(path, errors, _value_at(data, path), report)


def _check_space_keys(data: dict, report: _Report) -> None:
    sweep, config = data.get("sweep"), data.get("config", {})
    if isinstance(sweep, dict) and isinstance(sweep.get("space"), dict) and isinstance(config, dict):
        problem = space_keys_problem(sweep["space"], config)
        if problem and not report.covers(("sweep", "space")):
            report.at(("sweep", "space"), problem)


def _suggested_fields(errors: list[dict]) -> set[FieldPath]:
    """Fields that an unknown key's did-you-mean points at."""
    found = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            loc = _resolve(error["loc"])
            names = list(loc.parent.model_fields) if loc.parent else []
            close = difflib.get_close_matches(str(loc.path[-1]), names, n=1)
            if close:
                found.add((*loc.path[:-1], close[0]))
    return found


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
        hint = ""
        if kind == "string_type" and len(loc.path) == 2 and loc.path[0] == "env":
            hint = "; or {from_env: VAR} to read it from your environment when the job is submitted"
        return f"must be {_TYPE_NAMES[kind]}, got {got}{hint}"
    if kind in _BOUNDS:
        name, words = _BOUNDS[kind]
        return f"must be {words} {ctx[name]}, got {got}"
    if kind in ("too_short", "too_long"):
        words, count = ("at least", ctx["min_length"]) if kind == "too_short" else ("at most", ctx["max_length"])
        return f"must have {words} {count} item{'s' if count != 1 else ''}, got {got}"
    if kind == "value_error":
        return str(ctx["error"])
    hint = ""
    if kind == DISTRIBUTION_ERROR and isinstance(error.get("input"), dict) and len(error["input"]) == 1:
        hint = _did_you_mean(str(next(iter(error["input"]))), list(DISTRIBUTION_KINDS))
    return f"{error['msg'][:1].lower()}{error['msg'][1:]}, got {got}{hint}"


def _report_union(path: FieldPath, errors: list, value: Any, report: _Report) -> None:
    """The errors of the union member a value chose by its key, or one message naming every member."""
    keys = set(value) if isinstance(value, dict) else set()
    chosen = {loc.member for _, loc in errors if keys & set(getattr(loc.member, "model_fields", ()))}
    if len({loc.member for _, loc in errors}) == 1 and errors[0][1].member is not None:
        chosen = {errors[0][1].member}  # a discriminated union tried one member only: its errors are the story
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


# Paths read from working_dir when relative (spec.check_source, spec.check_input).
_SOURCES = (("init_from",), ("predict", "model"), ("predict", "input"))


def _check_files(data: dict, base_dir: Path, report: _Report) -> Path | None:
    """The resolved working_dir, after checking it, a FILE.py entrypoint inside it,
    and that relative checkpoint and input paths do not leave it through a symlink."""
    raw = data.get("working_dir", ".")
    if not isinstance(raw, str) or report.covers(("working_dir",)):
        return None  # already reported (the wrong type, a NUL byte, ...)
    base = base_dir.resolve()
    folder = (base / raw).resolve()
    if not folder.is_dir():
        report.at(("working_dir",), f"{raw!r} is not an existing folder (looked at {folder})")
        return None
    problem = _working_dir_problem(raw, base, folder)
    if problem:
        report.at(("working_dir",), problem)
        return None
    entry = data.get("entrypoint")
    if isinstance(entry, str) and not report.covers(("entrypoint",)) and re.match(r"[^:]+\.py:", entry):
        name, func = entry.rsplit(":", 1)
        problem = _entry_file_problem(name, folder) or _entry_function_problem(name, folder / name, func)
        if problem:
            report.at(("entrypoint",), problem)
    for path in _SOURCES:
        value = _get(data, path)
        if isinstance(value, str) and not report.covers(path):
            problem = _source_problem(value, folder)
            if problem:
                report.at(path, problem)
    return folder


def _working_dir_problem(raw: str, base: Path, folder: Path) -> str | None:
    """Why the folder ``raw`` names must not be shipped, if it must not."""
    if folder == Path(folder.anchor):
        return f"{raw!r} is the filesystem root ({folder}); point working_dir at the job's own folder"
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError, OSError):  # no HOME and no passwd entry
        home = None
    if home and home.is_relative_to(folder):
        what = "your home folder" if home == folder else f"{folder}, which holds your home folder ({home})"
        return (f"{raw!r} is {what}: shipping it would upload your keys and credentials to the cluster; "
                "point working_dir at the job's own folder")
    if not PurePosixPath(raw).is_absolute():
        link = _escaping_link(base, raw)
        if link:
            return (f"{raw!r} goes through the symlink {link[0]} -> {link[1]}, which leads out of the folder "
                    f"holding the link; write the folder's real path ({folder}) if you mean to ship it")
    return None


def _escaping_link(base: Path, raw: str) -> tuple[Path, Path] | None:
    """The first symlink on the way from ``base`` along ``raw`` that leads out of its own folder."""
    current = base
    for part in PurePosixPath(raw).parts:
        if part == ".":
            continue
        if part == "..":
            current = current.parent
            continue
        step = current / part
        if step.is_symlink():
            target = step.resolve()
            if not target.is_relative_to(current):
                return step, target
            current = target
        else:
            current = step
    return None


def _source_problem(value: str, folder: Path) -> str | None:
    """A relative checkpoint or input path that exists but leads out of working_dir."""
    relative = PurePosixPath(value)
    if value.startswith("job:") or re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value) or relative.is_absolute():
        return None  # another job, a URI or an absolute path: checked where it is read
    if ".." in relative.parts:
        return None  # reported by the spec's own check
    target = folder / relative
    if os.path.lexists(target) and not target.resolve().is_relative_to(folder):
        return (f"{value!r} leads outside working_dir ({folder}) through a symlink (to {target.resolve()}); "
                "write the real path instead")
    return None


def _get(data: Any, path: FieldPath) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _check_environ(data: dict, environ: Mapping[str, str], report: _Report) -> None:
    """Every ``{from_env: VAR}`` entry of env names a variable the submitter has set."""
    env = data.get("env")
    if not isinstance(env, dict):
        return
    for name, entry in env.items():
        path = ("env", name, "from_env")
        if not isinstance(entry, dict) or report.touches(("env", name)):
            continue  # fix the entry first
        variable = entry.get("from_env")
        if isinstance(variable, str) and re.fullmatch(SUBMITTER_ENV_PATTERN, variable) and variable not in environ:
            kind = "secret " if entry.get("secret") is True else ""
            report.at(path, f"{variable} is not set in your environment; export it before submitting "
                            f"(orch reads the {kind}value of {name} from the submitter's environment)")


MAX_ENTRY_SOURCE = 2 * 1024 * 1024  # larger entry files are not read at validation


def _entry_function_problem(name: str, path: Path, func: str) -> str | None:
    """An entry file that defines no top-level ``func`` (read, never run); None when it does,
    or when it cannot tell (a star import, a file too large to read here)."""
    if path.stat().st_size > MAX_ENTRY_SOURCE:
        return None
    try:
        tree = ast.parse(path.read_bytes(), filename=name)
    except (SyntaxError, ValueError) as error:
        return f"{name!r} does not parse: line {getattr(error, 'lineno', '?')}: {getattr(error, 'msg', error)}"
    defined: set[str] = set()
    # Anywhere in the file, not only at top level: `try: from fast import loop / except: def loop`.
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(alias.name == "*" for alias in node.names):
                return None
            defined.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
    if "__getattr__" in defined:
        return None  # a module __getattr__ may make any name
    if func in defined:
        return None
    close = difflib.get_close_matches(func, sorted(defined), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{name!r} defines no top-level {func!r}{hint}"


def _entry_file_problem(name: str, folder: Path) -> str | None:
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts:
        return f"{name!r} must be a path inside working_dir ({folder}), without '..'"
    target = (folder / relative).resolve()
    if not target.is_relative_to(folder):
        return (f"{name!r} leads outside working_dir ({folder}) through a symlink (to {target}); "
                "copy the file into working_dir or set working_dir to its folder")
    if not target.is_file():
        return f"file {name!r} not found in working_dir ({folder})"
    return None
