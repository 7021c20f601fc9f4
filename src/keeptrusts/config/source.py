"""YAML loading that remembers where every value came from, and layered merging.

Config errors must name file, line and key path, so values are loaded into ``SourcedDict``
and ``SourcedList``: ordinary containers that also carry a ``Mark`` per key or index.
Merging several ``--policy-config`` files keeps the mark of whichever file won.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader


@dataclass(frozen=True, slots=True)
class Mark:
    file: str
    line: int


class SourcedDict(dict):  # type: ignore[type-arg]
    """A dict that knows the source mark of each key."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marks: dict[Any, Mark] = {}
        self.mark: Mark | None = None


class SourcedList(list):  # type: ignore[type-arg]
    """A list that knows the source mark of each item."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.marks: list[Mark | None] = [None] * len(self)
        self.mark: Mark | None = None


class ConfigSyntaxError(Exception):
    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


def load_file(path: str | Path) -> SourcedDict:
    """Parse one YAML file into sourced containers; raise ``ConfigSyntaxError`` on bad YAML."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigSyntaxError(name, 0, f"cannot read file: {exc.strerror}") from exc
    return load_text(text, name)


def load_text(text: str, name: str = "<config>") -> SourcedDict:
    """Parse YAML text; the document must be a mapping."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigSyntaxError(name, 1, "the file is empty")
        if not isinstance(node, yaml.MappingNode):
            raise ConfigSyntaxError(
                name, node.start_mark.line + 1, "the top level must be a mapping"
            )
        return _build(node, loader, name)  # type: ignore[return-value]
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise ConfigSyntaxError(name, line, f"invalid YAML: {exc.problem}") from exc
    finally:
        loader.dispose()


def _build(node: yaml.Node, loader: yaml.SafeLoader, name: str) -> Any:
    mark = Mark(name, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = SourcedDict()
        out.mark = mark
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise ConfigSyntaxError(
                    name, key_node.start_mark.line + 1, f"duplicate key {key!r}"
                )
            out[key] = _build(value_node, loader, name)
            out.marks[key] = Mark(name, key_node.start_mark.line + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = [_build(child, loader, name) for child in node.value]
        seq = SourcedList(items)
        seq.marks = [Mark(name, child.start_mark.line + 1) for child in node.value]
        seq.mark = mark
        return seq
    return loader.construct_object(node, deep=True)


# Lists merged item-by-item on this key instead of being replaced, so an overlay can
# set ``base_url`` on one target of an unchanged seed config.
MERGE_BY_ID: dict[tuple[str, ...], str] = {("providers", "targets"): "id"}


def merge(base: Any, over: Any, path: tuple[str, ...] = ()) -> Any:
    """Deep-merge ``over`` onto ``base``: mappings recurse, id-keyed lists merge by id."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = SourcedDict(base)
        out.marks = dict(getattr(base, "marks", {}))
        out.mark = getattr(base, "mark", None)
        for key, value in over.items():
            out[key] = merge(base[key], value, (*path, str(key))) if key in base else value
            if key in getattr(over, "marks", {}):
                out.marks[key] = over.marks[key]
        return out
    id_key = MERGE_BY_ID.get(path)
    if id_key and isinstance(base, list) and isinstance(over, list):
        return _merge_by_id(base, over, id_key, path)
    return over


def _merge_by_id(base: list, over: list, id_key: str, path: tuple[str, ...]) -> SourcedList:
    out = SourcedList(base)
    out.marks = list(getattr(base, "marks", [None] * len(base)))
    out.mark = getattr(base, "mark", None)
    index = {item.get(id_key): i for i, item in enumerate(out) if isinstance(item, dict)}
    over_marks = getattr(over, "marks", [None] * len(over))
    for item, mark in zip(over, over_marks, strict=True):
        key = item.get(id_key) if isinstance(item, dict) else None
        if key is not None and key in index:
            out[index[key]] = merge(out[index[key]], item, path)
        else:
            out.append(item)
            out.marks.append(mark)
    return out


def load_layers(paths: Sequence[str | Path]) -> SourcedDict:
    """Load and merge config files in order; later files win."""
    merged: Any = None
    for path in paths:
        doc = load_file(path)
        merged = doc if merged is None else merge(merged, doc)
    if merged is None:
        raise ConfigSyntaxError("<none>", 0, "no --policy-config file given")
    return merged


def mark_at(root: Any, loc: Iterable[Any]) -> Mark | None:
    """Return the mark of the deepest existing value along ``loc``."""
    found = getattr(root, "mark", None)
    node = root
    for part in loc:
        marks = getattr(node, "marks", None)
        try:
            if isinstance(node, dict) and part in node:
                found = node.marks.get(part, found) if marks is not None else found
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                found = (marks[part] if marks is not None else None) or found
                node = node[part]
            else:
                break
        except (KeyError, TypeError):
            break
    return found


def format_path(loc: Iterable[Any]) -> str:
    """Render a key path like ``providers.targets[0].provider``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
