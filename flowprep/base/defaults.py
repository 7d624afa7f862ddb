"""Each default written once, in its dataclass: flags, parameters and other dataclasses read it from there.

A command-line flag says ``default=default_of(ExtractConfig, "quality")`` instead of repeating 95, and a verb
builds its config with ``from_fields(FitConfig, vars(args))`` instead of copying every flag by hand, so that a
default changed in the dataclass changes everywhere (and ``--help`` prints it).
"""
from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def default_of(cls: type, name: str) -> Any:
    """The default of dataclass ``cls``'s field ``name`` (a new one from its ``default_factory``).

    Raises:
        KeyError: ``cls`` has no such field (the message lists those it has).
        ValueError: the field has no default.
    """
    found = {f.name: f for f in fields(cls)}
    if name not in found:
        raise KeyError(f"{cls.__name__} has no field {name!r}; its fields: {', '.join(found)}")
    f = found[name]
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise ValueError(f"{cls.__name__}.{name} has no default")


def from_fields(cls: type[T], values: Mapping[str, Any], **given: Any) -> T:
    """``cls`` built from the entries of ``values`` named like its fields (others are ignored: a parsed command
    line also holds the verb and the top-level options), with ``given`` taking precedence (renamed or converted
    values)."""
    names = {f.name for f in fields(cls)}
    return cls(**{**{k: v for k, v in values.items() if k in names}, **given})
