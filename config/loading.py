"""Reading YAML config files with `${VAR}` interpolation and errors that name the file, the line and the problem."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml


class ConfigError(ValueError):
    """A config file is invalid; the message names the file, the place and the problem."""


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class RepeatedKey(yaml.YAMLError):
    """A mapping gives a key twice: YAML would keep the last one and drop the first without a word."""

    def __init__(self, key: Any, first: int, again: int) -> None:
        lines = f"on line {again}" if first == again else f"on lines {first} and {again}"
        super().__init__(f"{key!r} is given twice, {lines}: keep one")
        self.line = again


class _LineLoader(yaml.SafeLoader):
    """Safe loader that remembers the line of every mapping, so errors can point at it, and refuses a key
    given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` is meant to be overridden
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in lines:
                    raise RepeatedKey(key, lines[key], line)
                lines[key] = line
            except TypeError:  # an unhashable key: SafeLoader refuses it below, with its own words
                continue
        return super().construct_mapping(node, deep=deep)


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    mapping = loader.construct_mapping(node, deep=True)
    return LineDict(mapping, line=node.start_mark.line + 1)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class LineDict(dict):
    """A dict from YAML that knows the line it started on."""

    def __init__(self, *args: Any, line: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line = line


def read_yaml(path: Path, loader: type[_LineLoader] = _LineLoader, text: str | None = None) -> Any:
    """The YAML of `path`, read with `loader` (a SafeLoader subclass that notes lines). With `text`, that is
    the YAML, and `path` only names it in errors."""
    try:
        if text is None:
            text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}:{line_of_byte(path.read_bytes(), exc.start)}: not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except RepeatedKey as exc:
        raise ConfigError(f"{path}:{exc.line}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None


def line_of_byte(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def where(path: Path, node: Any) -> str:
    line = getattr(node, "line", None)
    return f"{path}:{line}" if line else str(path)


def interpolate(value: Any, *, env: Mapping[str, str] | None = None, place: str = "") -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a YAML value."""
    env = os.environ if env is None else env
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{place}: environment variable {name} is not set")

        return _VAR.sub(substitute, value)
    if isinstance(value, dict):
        result = LineDict({k: interpolate(v, env=env, place=place) for k, v in value.items()}, line=getattr(value, "line", None))
        return result
    if isinstance(value, list):
        return [interpolate(v, env=env, place=place) for v in value]
    return value
