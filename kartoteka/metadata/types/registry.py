"""The registry of field types: every module of this package that lists `TYPES` has them registered.

A new field type is one module here (its class, with everything the platform asks of it) and its macros in
templates/macros/fields.html; nothing else names it.
"""

from __future__ import annotations

import importlib
import pkgutil

from kartoteka.metadata import types as _package
from kartoteka.metadata.types.base import FieldType

_NOT_TYPES = frozenset({"base", "registry"})


class TypeRegistry:
    """An explicit registry of field types by name."""

    def __init__(self) -> None:
        self._types: dict[str, FieldType] = {}

    def register(self, field_type: FieldType) -> None:
        """Add a type; a second type of the same name is a programming error."""
        if field_type.name in self._types:
            raise ValueError(f"field type {field_type.name!r} is registered twice")
        self._types[field_type.name] = field_type

    def get(self, name: str) -> FieldType:
        """The type called `name`; KeyError names the known types."""
        try:
            return self._types[name]
        except KeyError:
            raise KeyError(f"unknown field type {name!r}; known: {', '.join(sorted(self._types))}") from None

    def names(self) -> list[str]:
        """All registered type names, sorted."""
        return sorted(self._types)

    def all(self) -> list[FieldType]:
        """All registered types, by name."""
        return [self._types[name] for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._types


def discover() -> TypeRegistry:
    """A registry of the types every module of kartoteka.metadata.types lists in its TYPES."""
    registry = TypeRegistry()
    for module_info in sorted(pkgutil.iter_modules(_package.__path__), key=lambda m: m.name):
        if module_info.name in _NOT_TYPES or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{_package.__name__}.{module_info.name}")
        for type_class in getattr(module, "TYPES", ()):
            registry.register(type_class())
    return registry


FIELD_TYPES = discover()
