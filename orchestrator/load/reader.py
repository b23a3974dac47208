"""The one hardened YAML reader: files and text into plain values that remember where each key
and value was written, for every YAML file orch reads.

YAML is composed with PyYAML's safe loader into a node tree (never constructed
by a full loader), and turned into plain values by hand so that every value
keeps its line and column. Duplicate keys, tags, merge keys and non-string
keys are problems, reported with their position.

Hostile input is bounded: at most 1 MiB is read (a FIFO cannot block it),
files over 16 KiB are parsed by libyaml (PyYAML's pure-Python scanner needs
about a second a MiB), composition stops at 20,000 nodes or 64 levels, and
alias expansion (at most 100,000 values) is measured once per node before any
value is built.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, ScalarEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from orchestrator.core.errors import SpecError
from orchestrator.load.messages import FieldPath, Report, mark_error, position

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

TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = {TAG + name for name in ("null", "bool", "int", "float", "str")}
_CONSTRUCTOR = SafeConstructor()


@dataclass(frozen=True)
class Words:
    """How problems name a kind of file, and a YAML syntax error in it: each kind keeps the words
    its messages have always had."""

    what: str = "job spec"
    invalid: str = "invalid YAML"


JOB_SPEC = Words()


def read_file(path: Path, words: Words = JOB_SPEC) -> str:
    """The text of the file at ``path``, at most ``MAX_BYTES`` of UTF-8."""
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
        raise SpecError([f"{path}: cannot read the {words.what}: {reason}"], str(path)) from None
    check_size(len(raw), str(path), words)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = line_column(raw, exc.start)
        message = f"byte {raw[exc.start]:#04x} is not UTF-8; save the file as UTF-8"
        raise SpecError([f"{path}:{line}:{column}: {message}"], str(path)) from None


def line_column(text: str | bytes, index: int) -> tuple[int, int]:
    newline = "\n" if isinstance(text, str) else b"\n"
    return text.count(newline, 0, index) + 1, index - text.rfind(newline, 0, index)


def check_size(size: int, source: str, words: Words = JOB_SPEC) -> None:
    if size > MAX_BYTES:
        raise SpecError([f"{source}: the file is larger than 1 MiB; a {words.what} is a short YAML file"], source)


class _Guarded:
    """Composition that refuses explicit tags, deep nesting and too many nodes as it goes.

    ``compose_node`` is PyYAML's own, with the guards added and the path resolvers
    (which a spec never uses) left out: it runs once per node, so it is kept lean.
    """

    source: str
    words: Words
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
            tag = event.tag.replace(TAG, "!!", 1)
            raise mark_error(self.source, event.start_mark, f"YAML tags such as {tag!r} are not allowed")
        self.nodes += 1
        if self.nodes > MAX_WRITTEN_NODES:
            message = f"the document has more than {MAX_WRITTEN_NODES} keys and values; a {self.words.what} is short"
            raise mark_error(self.source, event.start_mark, message)
        anchor = event.anchor
        if anchor is not None and anchor in self.anchors:
            raise ComposerError(f"found duplicate anchor {anchor!r}; first occurrence",
                                self.anchors[anchor].start_mark, "second occurrence", event.start_mark)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise mark_error(self.source, event.start_mark, f"nested deeper than {MAX_DEPTH} levels")
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

    def __init__(self, text: str, source: str, words: Words):
        yaml.SafeLoader.__init__(self, text)
        self.source, self.words, self.depth, self.nodes = source, words, 0, 0


# YAML 1.1 reads 1e-4 and 1.0e4 as text; users (and YAML 1.2) mean numbers. This adds to
# the loaders' own copies of the resolvers, not to SafeLoader's.
_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver(TAG + "float", _FLOAT, list("-+0123456789"))

if _CParser is not None:

    class _FastLoader(_Guarded, Composer, _CParser, Resolver):
        """libyaml's scanner and parser with the same Python composer, resolvers and guards."""

        def __init__(self, text: str, source: str, words: Words):
            _CParser.__init__(self, text)
            Composer.__init__(self)
            Resolver.__init__(self)
            self.source, self.words, self.depth, self.nodes = source, words, 0, 0

    _FastLoader.add_implicit_resolver(TAG + "float", _FLOAT, list("-+0123456789"))


def compose(text: str, source: str) -> Node | None:
    """The one document in ``text`` as a node tree (None when there is none)."""
    nodes = compose_all(text, source, JOB_SPEC, one=True)
    return nodes[0] if nodes else None


def compose_all(text: str, source: str, words: Words, one: bool = False) -> list[Node]:
    """The documents in ``text`` as node trees; ``one``: a second document is a problem."""
    fast = _CParser is not None and len(text) > PYTHON_PARSER_BYTES
    loader = None
    try:
        loader = (_FastLoader if fast else _Loader)(text, source, words)  # reading starts here: it may refuse a character
        loader.get_event()  # stream start
        nodes = []
        while not loader.check_event(yaml.StreamEndEvent):
            if one and nodes:
                mark = loader.peek_event().start_mark
                raise mark_error(source, mark, f"a second YAML document ('---'); a {words.what} is one document")
            nodes.append(loader.compose_document())
        return nodes
    except yaml.MarkedYAMLError as exc:
        context = f" ({exc.context})" if exc.context else ""
        message = f"{words.invalid}: {exc.problem}{context}"
        raise mark_error(source, exc.problem_mark or exc.context_mark, message) from None
    except yaml.reader.ReaderError as exc:
        # libyaml counts bytes of UTF-8, PyYAML characters
        index = len(text.encode()[: exc.position].decode("utf-8", "ignore")) if fast else exc.position
        line, column = line_column(text, index)
        message = f"{words.invalid}: character U+{exc.character:04X} is not allowed"
        raise SpecError([f"{source}:{line}:{column}: {message}"], source) from None
    finally:
        if loader:
            loader.dispose()


def measure(root: Node, source: str) -> None:
    """Refuse a tree whose aliases expand past MAX_NODES values or MAX_DEPTH levels.

    Each node is measured once (aliases share nodes), so a "billion laughs" costs
    as much as its text, not its expansion. Counts what ``Builder`` builds:
    values, not mapping keys.
    """
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels)
    active: set[int] = set()

    def visit(node: Node, depth: int) -> tuple[int, int]:
        known = measured.get(id(node))
        deepest = depth + (known[1] - 1 if known else 0)
        if id(node) in active or deepest > MAX_DEPTH:  # in active: the node contains itself
            message = f"nested deeper than {MAX_DEPTH} levels (a recursive alias?)"
            raise mark_error(source, node.start_mark, message)
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
                raise mark_error(source, child.start_mark, message)
        active.discard(id(node))
        measured[id(node)] = (values, levels)
        return values, levels

    visit(root, 1)


class Builder:
    """Turns a node tree into plain values, remembering where each key and value stands."""

    def __init__(self, source: str, report: Report):
        self.source, self.report = source, report
        self.nodes = 0
        self.scalars: dict[int, Any] = {}  # id(node) -> its value: an alias repeats a node many times

    def where(self, node: Node) -> str:
        return position(self.source, node.start_mark)

    def build(self, node: Node, path: FieldPath, depth: int = 1, key_where: Any = None) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            message = f"the document expands to more than {MAX_NODES} values (YAML aliases?)"
            raise mark_error(self.source, node.start_mark, message)
        if depth > MAX_DEPTH:  # aliases can nest a tree inside itself
            message = f"nested deeper than {MAX_DEPTH} levels (a recursive alias?)"
            raise mark_error(self.source, node.start_mark, message)
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
        if node.tag == TAG + "merge":
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


def _scalar(node: ScalarNode) -> Any:
    """The plain value of a scalar; ValueError, with a message for users, for an overlong number."""
    # Timestamps and other exotic implicit types stay text: a spec holds only JSON-like values.
    if node.tag not in _PLAIN_TAGS:
        return node.value
    if node.tag == TAG + "int" and len(node.value) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(node.value)} characters is too long; quote it to use it as text")
    return _CONSTRUCTOR.yaml_constructors[node.tag](_CONSTRUCTOR, node)


def load_documents(path: Path, words: Words, one: bool = False, report: Report | None = None) -> list[Any]:
    """Every document of the YAML file at ``path`` as plain values, empty ones left out (``one``:
    a second is a problem). A duplicate key, a tag or a merge key is a problem too, raised with
    its place in ``SpecError``. ``report`` keeps where each value was written."""
    source, report = str(path), report or Report()
    values = []
    for node in compose_all(read_file(path, words), source, words, one):
        measure(node, source)
        value = Builder(source, report).build(node, ())
        if value is not None:
            values.append(value)
    if report.problems:
        raise SpecError(report.problems, source)
    return values
