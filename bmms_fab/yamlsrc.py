"""Load YAML keeping the line of every key and list item, so errors can point at them."""

from __future__ import annotations

from typing import Any

import yaml


class LineDict(dict):
    """A mapping that remembers its own line and the line of each key."""

    line: int | None = None
    key_lines: dict


class LineList(list):
    """A sequence that remembers its own line and the line of each item."""

    line: int | None = None
    item_lines: list


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    own = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)           # merged (<<) pairs come first, then the node's own
    merged = len(node.value) - own
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    own_keys = set()
    for i, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if i >= merged:                    # an own key may override a merged one, not another own
            if key in own_keys:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            own_keys.add(key)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_text(text: str) -> Any:
    """Parse YAML text into LineDict/LineList/scalars. Raises yaml.YAMLError."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass


def line_of(container: Any, key: Any) -> int | None:
    """Line of `key` inside a LineDict (or index inside a LineList), else the container's line."""
    if isinstance(container, LineDict):
        return container.key_lines.get(key, container.line)
    if isinstance(container, LineList) and isinstance(key, int) and key < len(container.item_lines):
        return container.item_lines[key]
    return getattr(container, "line", None)
