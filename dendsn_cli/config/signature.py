"""Signature checks of group options: a node with a ``_target_`` is checked against the target's constructor
(`check_node`): an unknown key or a value of the wrong type names the key, before anything is built."""

from __future__ import annotations

import collections.abc
import inspect
import typing
from typing import Any

from hydra._internal.utils import _locate  # noqa: PLC2701 (hydra.utils.get_object logs the error itself)
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..errors import UserError


def locate(target: str):
    """The object a ``_target_`` names, imported but not called (hydra's ``_locate``; not
    hydra.utils.get_object, which logs the error itself). Raises what the import raises."""
    return _locate(str(target))


def check_node(node: DictConfig, path: str) -> None:
    """Check a node with a ``_target_`` against the target's signature, recursively."""
    for key, value in node.items_ex(resolve=False) if hasattr(node, "items_ex") else node.items():
        if isinstance(value, DictConfig):
            check_node(value, f"{path}.{key}")
    target = node.get("_target_")
    if target is None:
        return
    try:
        obj = locate(target)
    except Exception:
        raise UserError(f"{path}._target_={target!r} cannot be imported: check the class path") from None
    params, takes_kwargs, hints = _signature(obj)
    if params is None:
        return
    for key in node.keys():
        key = str(key)
        if key.startswith("_"):
            continue
        if key not in params:
            if takes_kwargs:
                continue
            known = ", ".join(params)
            raise UserError(f"{path}.{key} is not a parameter of {target}; its parameters are: {known}")
        value = OmegaConf.to_object(node[key]) if isinstance(node[key], (DictConfig, ListConfig)) else node[key]
        expected = hints.get(key)
        if expected is not None and not _matches(value, expected):
            raise UserError(f"{path}.{key}={value!r} has the wrong type: expected {_type_name(expected)}")


def _signature(obj):
    """(parameters, accepts **kwargs, type hints) of a callable; for a class, follow ``**kw`` up its bases."""
    fns = [c.__init__ for c in obj.__mro__ if "__init__" in vars(c)] if inspect.isclass(obj) else [obj]
    params, hints = {}, {}
    for fn in fns:
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return None, True, {}
        try:
            hints.update({k: v for k, v in typing.get_type_hints(fn).items() if k not in hints})
        except Exception:
            pass
        for k, p in sig.parameters.items():
            if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                params.setdefault(k, p)
        if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return params, False, hints
        if fn is object.__init__:
            break
    return params, True, hints


def _matches(value, expected) -> bool:
    if isinstance(value, dict) and "_target_" in value:
        return True
    origin = typing.get_origin(expected)
    if origin is typing.Union or str(origin) == "types.UnionType":
        return any(_matches(value, a) for a in typing.get_args(expected))
    if expected is Any:
        return True
    if expected is type(None):
        return value is None
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected in (bool, str):
        return isinstance(value, expected)
    if origin in (list, tuple, collections.abc.Sequence) or expected in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(expected) if a is not Ellipsis]
        if origin is tuple and len(args) > 1:  # Tuple[int, float]: one type per place
            return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
        return not args or all(_matches(v, args[0]) for v in value)
    if inspect.isclass(expected) and isinstance(value, (str, int, float, bool)):
        return isinstance(value, expected)
    return True


def _type_name(expected) -> str:
    args = typing.get_args(expected)
    if typing.get_origin(expected) in (list, tuple, collections.abc.Sequence):
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if args:
        return " or ".join(_type_name(a) for a in args)
    return "null" if expected is type(None) else getattr(expected, "__name__", str(expected))
