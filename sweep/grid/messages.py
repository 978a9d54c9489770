"""A grid file's validation errors as one line each: pydantic's first problem as (dotted field,
message), with the setting it probably meant where a name is unknown."""

from __future__ import annotations

import difflib
import typing
from typing import Optional

from pydantic import ValidationError

from tiltsweep.trainers.config import TrialConfig

TAGGED_SECTIONS = ("data", "model", "schedule")  # pydantic puts the `name` tag into error paths


def describe_validation_error(
    error: ValidationError, prefix: str = "", raw: Optional[dict] = None, show_input: bool = True, schema=TrialConfig
) -> tuple[Optional[str], str]:
    """The first problem pydantic found, as (dotted field, message)."""
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    if len(loc) > 1 and loc[0] in TAGGED_SECTIONS:
        loc.pop(1)  # the discriminator value pydantic inserts, e.g. data.spiral.classes
    field = ".".join(([prefix] if prefix else []) + loc) or None
    kind, message = first["type"], first["msg"]
    if kind == "extra_forbidden":
        if len(loc) == 1:
            known = list(schema.model_fields)
        else:
            known = settings_of(loc[0], (raw or {}).get(loc[0])) if len(loc) == 2 else []
        message = "unknown setting" + suggest(loc[-1], known)
    elif kind == "missing":
        message = "is required"
    elif kind == "union_tag_not_found":
        field, message = f"{field}.name", "is required: it chooses the kind"
    elif kind == "union_tag_invalid":
        context = first.get("ctx", {})
        field, message = f"{field}.name", f"unknown kind {context.get('tag')!r} (expected one of {context.get('expected_tags')})"
    elif kind in ("not_a_boolean", "not_finite"):  # trainers.config.Section's own checks, by setting
        setting = first["ctx"]["name"]
        field = ".".join(filter(None, [field, setting]))
        message = message.removeprefix(f"{setting}: ")
    elif kind.startswith("value_error"):
        message = message.removeprefix("Value error, ")
    elif show_input and "input" in first and not isinstance(first["input"], dict):
        message = f"{message}, got {first['input']!r}"
    return field, message


def settings_of(section: str, raw_section) -> list[str]:
    """The setting names a config section accepts (for its kind, where it has kinds)."""
    field = TrialConfig.model_fields.get(section)
    if field is None:
        return []
    members = typing.get_args(field.annotation) or (field.annotation,)
    kind = raw_section.get("name") if isinstance(raw_section, dict) else None
    for member in members:
        tags = typing.get_args(member.model_fields["name"].annotation) if "name" in member.model_fields else ()
        if len(members) == 1 or kind in tags:
            return list(member.model_fields)
    return []


def suggest(word: str, choices) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""
