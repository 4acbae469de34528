"""A small declarative schema for YAML documents: unknown keys, types and ranges, each error
naming the dotted path (`environments.lab.hosts[2].port`) and the line it stands on."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable

from .errors import Problem
from .yamlsrc import LineDict, LineList, line_of

Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Field:
    """What one key may hold. `kind` is one of str, int, bool, map, list, any."""

    kind: str
    required: bool = False
    default: Any = None
    doc: str = ""
    fields: dict[str, "Field"] | None = None   # for kind=map with fixed keys
    values: "Field | None" = None             # for kind=map with free keys, or list items
    check: Check | None = None
    extensions: bool = False                  # allow `x-...` keys (for YAML anchors)


def _type_name(value: Any) -> str:
    return {str: "a string", int: "a number", bool: "true/false", float: "a number",
            type(None): "nothing (null)"}.get(type(value), "a mapping" if isinstance(value, dict)
                                                else "a list" if isinstance(value, list)
                                                else type(value).__name__)


_EXPECT = {"str": "a string", "int": "a whole number", "bool": "true or false",
           "map": "a mapping", "list": "a list", "any": "a value"}


def validate(value: Any, spec: Field, path: str, source: str, line: int | None,
             problems: list[Problem]) -> Any:
    """Check `value` against `spec`; append Problems; return the value with defaults filled in."""
    def bad(msg: str, at_line: int | None = line) -> None:
        problems.append(Problem(source, at_line, path, msg))

    ok_type = {
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "map": lambda v: isinstance(v, dict),
        "list": lambda v: isinstance(v, list),
        "any": lambda v: True,
    }[spec.kind]
    if not ok_type(value):
        bad(f"expected {_EXPECT[spec.kind]}, got {_type_name(value)} ({value!r})"
            if not isinstance(value, (dict, list)) else
            f"expected {_EXPECT[spec.kind]}, got {_type_name(value)}")
        return value
    if spec.kind == "map" and spec.fields is not None:
        out = {}
        for key in value:
            if key not in spec.fields and not (spec.extensions and str(key).startswith("x-")):
                known = ", ".join(sorted(spec.fields))
                problems.append(Problem(source, line_of(value, key), f"{path}.{key}",
                                        f"unknown key (expected one of: {known})"))
        for key, sub in spec.fields.items():
            if key in value and value[key] is not None:
                out[key] = validate(value[key], sub, f"{path}.{key}", source,
                                    line_of(value, key), problems)
            elif sub.required:
                bad(f"missing required key '{key}'" + (f" ({sub.doc})" if sub.doc else ""),
                    getattr(value, "line", line))
            else:
                out[key] = sub.default
        value = _keep_lines(value, out)
    elif spec.kind == "map" and spec.values is not None:
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                problems.append(Problem(source, line_of(value, key), f"{path}.{key}",
                                        "keys must be strings"))
                continue
            out[key] = validate(item, spec.values, f"{path}.{key}", source,
                                line_of(value, key), problems)
        value = _keep_lines(value, out)
    elif spec.kind == "list" and spec.values is not None:
        out_list = LineList(validate(item, spec.values, f"{path}[{i}]", source,
                                     line_of(value, i), problems)
                            for i, item in enumerate(value))
        out_list.line = getattr(value, "line", line)
        out_list.item_lines = getattr(value, "item_lines", [])
        value = out_list
    if spec.check is not None:
        msg = spec.check(value)
        if msg:
            bad(msg)
    return value


def _keep_lines(original: Any, new: dict) -> LineDict:
    out = LineDict(new)
    out.line = getattr(original, "line", None)
    out.key_lines = getattr(original, "key_lines", {})
    return out


# ---- reusable checks ---------------------------------------------------------------------------

def port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else f"port {value} out of range (expected 1-65535)"


def positive(value: int) -> str | None:
    return None if value >= 1 else f"expected a number >= 1, got {value}"


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else \
            f"{value!r} is not one of: {', '.join(choices)}"
    return check


_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def host_name(value: str) -> str | None:
    return None if _HOSTNAME.match(value) else \
        f"{value!r} is not a valid host name (lowercase letters, digits and '-', max 63)"


def ip_address(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address"
    return None


def address(value: str) -> str | None:
    if ip_address(value) is None:
        return None
    labels = value.rstrip(".").split(".")
    return None if all(_HOSTNAME.match(l.lower()) for l in labels) else \
        f"{value!r} is neither an IP address nor a DNS name"


def url(value: str) -> str | None:
    return None if re.match(r"^https?://[^\s/]+(:\d+)?(/\S*)?$", value) else \
        f"{value!r} is not an http(s) URL"


def env_name(value: str) -> str | None:
    return None if re.match(r"^[A-Z_][A-Z0-9_]*$", value) else \
        f"{value!r} is not an environment variable name"
