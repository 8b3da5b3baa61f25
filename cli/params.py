"""Command-line values converted without importing pydantic, in the plain cases.

typer (0.2x) converts each parameter's value with a pydantic ``TypeAdapter``; building the
first one imports pydantic, about 70 ms of CPU on every command (a quarter of ``vqz info``).
vqz's commands take plain types: ``Path``, ``int``, ``float``, ``str``, ``bool`` and lists
of them. For those, :func:`install` gives each parameter a converter that returns what
typer's own would, by the same steps without pydantic:

* ``None`` (an option not given) -> ``None``, or ``()`` for a multi-value parameter, as
  typer's ``RuntimeParam.coerce`` does before it uses the adapter;
* ``Path``: pydantic makes ``Path(text)`` of a non-empty string; typer's
  ``coerce_cli_path`` then applies the parameter's path checks (called here with that Path);
* ``int`` / ``float``: a value of the type, or plain decimal digits (``int(text)``,
  ``float(text)``), within ``min`` / ``max`` (no ``clamp``);
* ``str``: a ``str`` as it is; ``bool``: a ``bool`` as it is; lists: item by item.

Anything else -- another type, a parser or click type, a value outside these shapes, any
value that would be refused -- goes through typer's own converter (built then, importing
pydantic), so every error message is typer's. Nothing is installed when typer lacks the
internals this relies on (other typer versions convert as they always did).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args, get_origin

_MISS = object()
_INT = re.compile(r"(?:0|[1-9][0-9]{0,17})\Z")
_FLOAT = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,15})?\Z")
_LEAVES = (Path, int, float, str, bool)

try:  # typer >= 0.2x: pydantic-based conversion
    from typer._coercion import build_runtime_param as _build_runtime_param
    from typer._param_types import coerce_cli_path as _coerce_cli_path
    from typer.core import _TyperParameter
except ImportError:  # pragma: no cover - another typer: nothing to speed up
    _TyperParameter = None


class FastRuntimeParam:
    """A parameter's converter: the plain cases here, the rest by typer's own (built on demand)."""

    def __init__(self, descriptor: Any, leaf: type) -> None:
        self.descriptor = descriptor
        self.leaf = leaf
        self.is_list = get_origin(descriptor.annotation) is list
        self._slow = None

    def slow(self) -> Any:
        """typer's own converter of this parameter."""
        if self._slow is None:
            self._slow = _build_runtime_param(self.descriptor)
        return self._slow

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multi = param.multiple or param.nargs == -1
        if value is None:
            return () if multi else None
        try:
            if self.is_list:
                result = self._list(value, param, ctx) if not isinstance(value, str) else _MISS
            else:
                result = self._leaf(value, param, ctx) if not multi else _MISS
        except Exception:  # the slow path gives typer's own error
            result = _MISS
        if result is _MISS:
            return self.slow().coerce(value, param=param, ctx=ctx)
        return result

    def _list(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            return _MISS
        items = [self._leaf(item, param, ctx) for item in value]
        return _MISS if any(item is _MISS for item in items) else items

    def _leaf(self, value: Any, param: Any, ctx: Any) -> Any:
        info = self.descriptor.parameter_info
        leaf = self.leaf
        if leaf is bool:
            return value if isinstance(value, bool) else _MISS
        if leaf is str:
            return value if type(value) is str else _MISS
        if leaf is Path:
            if type(value) is str and value and "\0" not in value:
                value = Path(value)
            if not isinstance(value, Path):
                return _MISS
            return _coerce_cli_path(value, info, path_type=Path, param=param, ctx=ctx)
        # int or float
        if type(value) is leaf:
            number = value
        elif type(value) is str and (_INT if leaf is int else _FLOAT).match(value):
            number = leaf(value)
        else:
            return _MISS
        if info.min is not None and not number >= info.min:
            return _MISS
        if info.max is not None and not number <= info.max:
            return _MISS
        return number


def _plain(descriptor: Any) -> type | None:
    """The leaf type of a parameter this module converts, else None."""
    info = descriptor.parameter_info
    if descriptor.file_annotation is not None or info.parser is not None or getattr(info, "click_type", None) is not None:
        return None
    if getattr(info, "clamp", False) or getattr(info, "path_type", None) is not None:
        return None
    annotation = descriptor.annotation
    if get_origin(annotation) is list:
        args = get_args(annotation)
        if len(args) != 1:
            return None
        annotation = args[0]
    return annotation if annotation in _LEAVES else None


def install(params: list) -> None:
    """Give each typer parameter of ``params`` that takes a plain type the fast converter."""
    if _TyperParameter is None:
        return
    for param in params:
        if not isinstance(param, _TyperParameter) or getattr(param, "_runtime_param", _MISS) is not None:
            continue
        descriptor = getattr(param, "type_descriptor", None)
        leaf = _plain(descriptor) if descriptor is not None else None
        if leaf is not None:
            param._runtime_param = FastRuntimeParam(descriptor, leaf)
