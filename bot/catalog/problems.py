"""Pydantic's validation errors as the catalog's problems: the key path as written in the file
and a sentence a person can act on."""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from bot.catalog.checks import Loc
from bot.catalog.schema import Catalog
from bot.catalog.services import TARGET_KINDS


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _walk(loc: tuple[Any, ...]) -> tuple[Loc, Any]:
    """Follow a pydantic error `loc` through the model: (the key path as written, its type).

    Pydantic puts the tag of a discriminated union (`kubernetes`) and `[key]` for dict keys into
    `loc`; neither is a key in the file, so both are dropped.
    """
    annotation: Any = Catalog
    path: list[str | int] = []
    for part in loc:
        current = _unwrap(annotation)
        origin = get_origin(current)
        if part == "[key]":
            annotation = None
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {field.alias or name: field for name, field in current.model_fields.items()}
            annotation = fields[part].annotation if part in fields else None
        elif origin is list:
            annotation = get_args(current)[0]
        elif origin is dict:
            annotation = get_args(current)[1]
        elif origin in (Union, types.UnionType):
            tagged = {_tag_of(_unwrap(member)): member for member in get_args(current)}
            if part in tagged:
                annotation = tagged[part]
                continue
            annotation = None
        else:
            annotation = None
        path.append(part)
    return tuple(path), annotation


def _tag_of(model: Any) -> str | None:
    if isinstance(model, type) and issubclass(model, BaseModel) and "kind" in model.model_fields:
        return get_args(model.model_fields["kind"].annotation)[0]
    return None


def _keys_of(annotation: Any) -> list[str]:
    model = _unwrap(annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [field.alias or name for name, field in model.model_fields.items()]
    return []


def _show(value: Any, loc: Loc, from_variables: Mapping[Loc, list[str]]) -> str:
    """A YAML-like rendering of the offending value; values from ${VAR} are not echoed."""
    if loc in from_variables:
        return "the value of " + ", ".join(f"${{{name}}}" for name in from_variables[loc])
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "date_type": "a date (YYYY-MM-DD)",
    "date_parsing": "a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "a date (YYYY-MM-DD)",
}


def describe_error(error: Any, from_variables: Mapping[Loc, list[str]]) -> tuple[Loc, str]:
    """Turn one pydantic error into (key path as written in the file, message); values that came
    from `${VAR}` (`from_variables`: key path -> variable names) are named, not shown."""
    loc, _ = _walk(tuple(error["loc"]))
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "opsbot":
        return (*loc, ctx["field"]), error["msg"]
    if kind == "value_error":
        return loc, str(ctx["error"])
    if kind == "missing":
        return loc, "required, but missing"
    if kind == "extra_forbidden":
        allowed = _keys_of(_walk(tuple(error["loc"])[:-1])[1])
        unknown = str(loc[-1])
        guess = difflib.get_close_matches(unknown, allowed, n=1)
        hint = f"did you mean {guess[0]!r}?" if guess else f"allowed: {', '.join(allowed)}"
        return loc, f"unknown key {unknown!r} ({hint})"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        kinds = ", ".join(TARGET_KINDS)
        if kind == "union_tag_not_found":
            return (*loc, "kind"), f"required, but missing (one of {kinds})"
        return (*loc, "kind"), f"unknown kind {ctx['tag']!r} (kinds: {kinds})"
    if kind == "literal_error":
        return loc, f"must be {ctx['expected']}, got {_show(value, loc, from_variables)}"
    if kind in _TYPE_NAMES:
        message = f"expected {_TYPE_NAMES[kind]}, got {_show(value, loc, from_variables)}"
        if kind == "string_type" and isinstance(value, (int, float)):
            message += " (put it in quotes)"
        return loc, message
    if kind == "string_too_short":
        return loc, "must not be empty"
    if kind == "too_short":
        return loc, f"must have at least {ctx['min_length']} entry"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<="}
        limit = f"{next(iter(ctx.values())):g}"
        shown = _show(value, loc, from_variables)
        return loc, f"must be {sign.get(kind, '<')} {limit}, got {shown}"
    message = error["msg"]  # pragma: no cover - a pydantic error type not seen above
    return loc, message[:1].lower() + message[1:]  # pragma: no cover
