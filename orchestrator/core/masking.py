"""Env entries from the submitter's environment, and keeping secret ones out of sight.

A job spec names secrets; it never holds them (docs/spec.md, "Secrets"):

    env:
      LOG_LEVEL: info                                          # plain: written in the spec
      WANDB_API_KEY: {from_env: WANDB_API_KEY, secret: true}   # read at submit time, redacted
      GIT_SHA: {from_env: CI_COMMIT_SHA}                       # read at submit time, shown

Pure functions; nothing here reads or writes anything, or looks at os.environ:

- ``split_env`` sorts a spec's env into plain values, entries to read from the
  submitter's environment, and the names whose values are secret;
- ``resolve_env`` reads those entries from a given environ mapping, and returns
  the env the workers get plus the set of secret values (a SpecError naming
  every missing variable, exit 2, when one is not set);
- ``secret_values`` finds the secret values again in an env that was resolved
  earlier (the ``env_vars`` stored with a job), for redacting later;
- ``redact`` (and ``redact_stream`` for logs read in chunks) replaces each
  occurrence of a secret value with ``***`` in text or any JSON-able object.

(The module is ``orchestrator.core.masking``; absolute imports elsewhere still get the
standard library's ``secrets``.)
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from orchestrator.core.errors import SpecError

if TYPE_CHECKING:  # a client reads a spec's JSON without loading pydantic (`orch submit`)
    from orchestrator.core.spec import EnvFrom, JobSpec

REDACTED = "***"
# A multi-line secret (a PEM key) may be printed line by line; lines this long or
# longer are redacted on their own too (shorter ones would hide ordinary text).
MIN_LINE_CHARS = 8


class EnvParts(NamedTuple):
    plain: dict[str, str]  # NAME -> the value written in the spec
    from_env: dict[str, str]  # NAME -> the submitter's variable, for every {from_env: VAR} entry
    secret: frozenset[str]  # the NAMEs whose values are secret (a subset of from_env's)


class ResolvedEnv(NamedTuple):
    values: dict[str, str]  # every env entry with its value: runtime_env["env_vars"] for the workers
    secrets: frozenset[str]  # the secret values, for redact(); never store or print these


def split_env(env: JobSpec | Mapping[str, Any]) -> EnvParts:
    """Plain values, entries read from the submitter's environment, and secret names.

    ``env`` is a JobSpec, its ``env`` mapping, or that mapping as JSON
    (``spec.model_dump(mode="json")["env"]``: ``{"from_env": ..., "secret": ...}``).
    """
    entries = env if isinstance(env, Mapping) else env.env
    plain: dict[str, str] = {}
    sources: dict[str, str] = {}
    secret: set[str] = set()
    for name, entry in entries.items():
        if isinstance(entry, str):
            plain[name] = entry
            continue
        source, hidden = _env_from(entry)
        sources[name] = source
        if hidden:
            secret.add(name)
    return EnvParts(plain, sources, frozenset(secret))


def _env_from(entry: EnvFrom | Mapping[str, Any]) -> tuple[str, bool]:
    """A ``{from_env: VAR, secret: ...}`` entry of a validated spec, as a model or its JSON."""
    if isinstance(entry, Mapping):
        return entry["from_env"], bool(entry.get("secret", False))
    return entry.from_env, entry.secret


def resolve_env(env: JobSpec | Mapping[str, Any], environ: Mapping[str, str]) -> ResolvedEnv:
    """Every env entry with its value, reading ``from_env`` entries from ``environ``.

    Raises SpecError (exit 2) listing each variable that ``environ`` lacks, by
    field path, before anything is submitted. Values are never part of a message.
    """
    parts = split_env(env)
    missing = [
        f"env.{name}.from_env: {variable} is not set in your environment; export it before submitting"
        for name, variable in parts.from_env.items()
        if variable not in environ
    ]
    if missing:
        raise SpecError(missing)
    values = {**parts.plain, **{name: environ[variable] for name, variable in parts.from_env.items()}}
    return ResolvedEnv(values, frozenset(values[name] for name in parts.secret if values[name]))


def secret_values(env: JobSpec | Mapping[str, Any], values: Mapping[str, str]) -> frozenset[str]:
    """The secret values in ``values``, the workers' env as ``resolve_env`` made it
    (NAME -> value; e.g. a stored Ray job's ``runtime_env["env_vars"]``), for ``redact``.
    Names missing from ``values`` and empty values are skipped."""
    return frozenset(values[name] for name in split_env(env).secret if values.get(name))


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` with every occurrence of a secret replaced by ``***``.

    Text is searched; so are the keys and values of mappings and the items of
    lists and tuples, recursively (a new object is returned, the input is left
    as it was). Numbers, booleans and None pass through. Each secret is also
    found as it appears inside JSON text (quotes and backslashes escaped), and a
    multi-line secret line by line. Empty secrets are ignored.
    """
    matcher = _matcher(frozenset(secrets))
    return value if matcher is None else _redact(value, matcher.pattern)


def redact_stream(chunks: Iterable[str], secrets: Iterable[str]) -> Iterator[str]:
    """Redact text that arrives in pieces (``orch logs --follow``).

    A secret split across two chunks is still found: the end of a chunk that
    could be the start of a secret is held back until the next chunk shows
    whether it is; everything else is passed on at once. The end of the
    stream releases what is held.
    """
    matcher = _matcher(frozenset(secrets))
    if matcher is None:
        yield from chunks
        return
    pattern, forms = matcher.pattern, matcher.forms
    longest = max(len(form) for form in forms)
    buffer = ""
    for chunk in chunks:
        buffer += chunk
        cut = len(buffer) - _partial(buffer, forms, longest - 1)
        for match in pattern.finditer(buffer, max(0, cut - longest)):
            if match.start() < cut < match.end():
                cut = match.end()  # never split a whole one
        if cut > 0:
            yield pattern.sub(REDACTED, buffer[:cut])
            buffer = buffer[cut:]
    if buffer:
        yield pattern.sub(REDACTED, buffer)


def _partial(text: str, forms: tuple[str, ...], most: int) -> int:
    """Length of the longest end of ``text`` (at most ``most``) that begins some form."""
    for size in range(min(most, len(text)), 0, -1):
        tail = text[-size:]
        if any(form.startswith(tail) for form in forms):
            return size
    return 0


def _redact(value: Any, pattern: re.Pattern) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    if isinstance(value, Mapping):
        return {_redact(key, pattern): _redact(item, pattern) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item, pattern) for item in value]
    if isinstance(value, tuple):
        return tuple(_redact(item, pattern) for item in value)
    return value


class _Matcher(NamedTuple):
    pattern: re.Pattern
    forms: tuple[str, ...]  # the texts it finds: each secret as is, JSON-escaped, line by line


@functools.lru_cache(maxsize=64)
def _matcher(secrets: frozenset[str]) -> _Matcher | None:
    forms: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        forms.add(secret)
        forms.add(json.dumps(secret)[1:-1])  # as it appears inside a JSON string
        forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
        forms.update(line for line in secret.splitlines() if len(line.strip()) >= MIN_LINE_CHARS)
    forms.discard("")
    if not forms:
        return None
    # Longest first: where one secret contains another, the whole of it is replaced.
    ordered = tuple(sorted(forms, key=lambda form: (-len(form), form)))
    return _Matcher(re.compile("|".join(re.escape(form) for form in ordered)), ordered)
