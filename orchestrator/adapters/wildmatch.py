"""Git's wildmatch patterns (``.gitignore``, ``.rayignore``, ``excludes``) as Ray's packager reads them.

A port of the ``gitwildmatch`` patterns of the pathspec copy Ray ships
(``ray._private.thirdparty.pathspec``, which Ray's ``packaging.py`` uses), so
the client can package a ``working_dir`` without importing Ray and leave out
exactly what Ray would. Quirks are Ray's, kept on purpose: a pattern matches a
path written without a trailing slash, so ``build/`` leaves out what is under
``build`` and not an empty ``build`` itself. tests/unit/test_package_like_ray.py
holds it to Ray's copy.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable


def matcher(lines: Iterable[str]) -> Callable[[str], bool]:
    """Whether a relative POSIX path is matched by the patterns: the last pattern that matches
    it decides (a ``!pattern`` takes it back), as pathspec's ``PathSpec.match_file``."""
    compiled = [(re.compile(regex), include) for regex, include in map(_to_regex, lines) if regex]

    def match(path: str) -> bool:
        path = path[2:] if path.startswith("./") else path
        matched = False
        for regex, include in compiled:
            if regex.match(path):
                matched = include
        return matched

    return match


def _to_regex(pattern: str) -> tuple[str | None, bool]:
    """The regex of one pattern line and whether it includes (False: ``!`` negates); None for
    blank lines, comments and a lone ``/``."""
    pattern = pattern.strip()
    if not pattern or pattern.startswith("#") or pattern == "/":
        return None, False
    include = not pattern.startswith("!")
    pattern = pattern[1:] if not include else pattern
    pattern = pattern[1:] if pattern.startswith("\\") else pattern  # an escaped leading # or !
    segments = pattern.split("/")
    if not segments[0]:
        del segments[0]  # a leading slash anchors the pattern at the folder of its ignore file
    elif (len(segments) == 1 or (len(segments) == 2 and not segments[1])) and segments[0] != "**":
        segments.insert(0, "**")  # a name alone (or `name/`) matches at any depth
    if not segments[-1] and len(segments) > 1:
        segments[-1] = "**"  # `dir/` matches what lies under dir
    return "".join(["^", *_segments(segments, include), "$"]), include


def _segments(segments: list[str], include: bool) -> Iterable[str]:
    need_slash, end = False, len(segments) - 1
    for i, segment in enumerate(segments):
        if segment == "**":
            if i == 0 and i == end:
                yield ".+"
            elif i == 0:
                yield "(?:.+/)?"
                need_slash = False
            elif i == end:
                yield "/.*"
            else:
                yield "(?:/.+)?"
                need_slash = True
            continue
        if need_slash:
            yield "/"
        yield "[^/]+" if segment == "*" else _glob(segment)
        if segment != "*" and i == end and include:
            yield "(?:/.*)?"  # a name matches a folder with everything under it
        need_slash = True


def _glob(segment: str) -> str:
    """One path segment's glob as a regex: ``*``, ``?``, ``[...]`` never cross a slash."""
    out, i, end, escaped = [], 0, len(segment), False
    while i < end:
        char = segment[i]
        i += 1
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            bracket, i = _bracket(segment, i)
            out.append(bracket)
        else:
            out.append(re.escape(char))
    return "".join(out)


def _bracket(segment: str, i: int) -> tuple[str, int]:
    """The regex of the bracket expression opening before ``i``, and where the glob goes on;
    an unclosed ``[`` is a literal."""
    end, j = len(segment), i
    if j < end and segment[j] == "!":
        j += 1
    if j < end and segment[j] == "]":
        j += 1  # a `]` first in the brackets is one of the characters
    while j < end and segment[j] != "]":
        j += 1
    if j >= end:
        return "\\[", i
    j += 1
    expr = "["
    if segment[i] == "!":
        expr, i = "[^", i + 1
    elif segment[i] == "^":
        expr, i = "[\\^", i + 1  # undefined in a glob: a literal caret, as fnmatch
    return expr + segment[i:j].replace("\\", "\\\\"), j
