"""YAML that remembers where things are: every mapping knows its line and its keys' lines.

Why: a technician who edits a registry or a rule file by hand gets an error that names the
file and the line (``registry.yaml:12: member b: …``), not a Python traceback. Used by the
registry (:mod:`ioe.registry`) and the rule files (:mod:`control.rules`).
"""

from __future__ import annotations

from typing import Any

import yaml


class LineDict(dict):  # type: ignore[type-arg]
    """A mapping that remembers its own line and the line of each of its keys."""

    line: int = 0
    key_lines: dict[str, int]


class LineLoader(yaml.SafeLoader):
    """A SafeLoader whose mappings are :class:`LineDict`."""


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> LineDict:
    result = LineDict(loader.construct_mapping(node, deep=True))
    result.line = node.start_mark.line + 1
    result.key_lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
    return result


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load(text: str) -> Any:
    return yaml.load(text, Loader=LineLoader)  # noqa: S506 - a SafeLoader subclass


def line_of(obj: Any, key: str | None = None) -> int:
    """The line of ``key`` in the mapping ``obj`` (or of ``obj`` itself); 0 when unknown."""
    if key is not None and key in getattr(obj, "key_lines", {}):
        return int(obj.key_lines[key])
    return int(getattr(obj, "line", 0) or 0)
