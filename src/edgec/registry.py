"""A named registry of plug-ins: a decorator adds one under its name, a duplicate is an error.

Used for target kinds (``edgec.targets.analyzers``) and export layouts (``edgec.export``);
whatever lists the choices (profile validation, the CLI) reads the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from edgec.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Plug-ins of one kind (``what``, e.g. "target kind"), by name, in registration order."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object as ``name``."""

        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} '{name}' is already registered")
            self._items[name] = item
            return item

        return add

    def unregister(self, name: str) -> None:
        del self._items[name]

    def get(self, name: str) -> T:
        """The plug-in named ``name``; an InputError listing the choices if there is none."""
        try:
            return self._items[name]
        except KeyError:
            raise InputError(
                f"unknown {self.what} '{name}' (use {', '.join(self.names())})"
            ) from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)
