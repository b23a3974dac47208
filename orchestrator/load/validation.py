"""pydantic's errors in the words of ``messages.py``: each at the field the user wrote, with
what to write instead (the one did-you-mean). Only what validates a model imports this."""

from __future__ import annotations

import re
import types
from typing import Annotated, Any, Literal, NamedTuple, Sequence, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError

from orchestrator.core.spec import DISTRIBUTION_ERROR, DISTRIBUTION_KINDS, JobSpec
from orchestrator.core.spec_words import ENTRYPOINT_PATTERN, ENV_NAME_PATTERN, NAME_PATTERN, SUBMITTER_ENV_PATTERN
from orchestrator.core.suggest import closest, did_you_mean
from orchestrator.load.messages import FieldPath, Report

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


def field_problems(error: ValidationError, top: str | None = None, fields: Sequence[str] = ()) -> list[str]:
    """pydantic's errors of a plain model (the job spec's are ``report_validation``'s), one line
    each: ``field.path: message``, or ``top: message`` at the top level (the message alone when
    ``top`` is None). An unknown field gets the did-you-mean among ``fields``, when given."""
    lines = []
    for found in error.errors():
        where = ".".join(str(part) for part in found["loc"]) or top
        message = found["msg"].removeprefix("Value error, ")
        if fields and found["type"] == "extra_forbidden":
            message = "unknown field" + did_you_mean(str(found["loc"][-1]), fields)
        lines.append(f"{where}: {message}" if where else message)
    return lines


def report_validation(exc: ValidationError, data: dict, report: Report) -> None:
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


def _suggested_fields(errors: list[dict]) -> set[FieldPath]:
    """Fields that an unknown key's did-you-mean points at."""
    found = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            loc = _resolve(error["loc"])
            names = list(loc.parent.model_fields) if loc.parent else []
            close = closest(str(loc.path[-1]), names)
            if close:
                found.add((*loc.path[:-1], close[0]))
    return found


def _report_one(error: dict, loc: _Loc, report: Report) -> None:
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
        allowed = f" (allowed: {', '.join(names)})" if names else ""
        return f"unknown field {loc.path[-1]!r}{did_you_mean(str(loc.path[-1]), names, allowed)}"
    if kind == "literal_error":
        names = [str(v) for v in get_args(loc.annotation)]
        return f"must be one of {', '.join(names)}, got {got}{did_you_mean(str(error['input']), names)}"
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
        hint = did_you_mean(str(next(iter(error["input"]))), list(DISTRIBUTION_KINDS))
    return f"{error['msg'][:1].lower()}{error['msg'][1:]}, got {got}{hint}"


def _report_union(path: FieldPath, errors: list, value: Any, report: Report) -> None:
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
    hint = did_you_mean(next(iter(value)), keys) if isinstance(value, dict) and len(value) == 1 else ""
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


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _value_at(data: Any, path: FieldPath) -> Any:
    for part in path:
        data = data[part]
    return data
