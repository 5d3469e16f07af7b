"""Plain record classes for the start-up path.

`dataclasses` imports `inspect` (with `ast`, `dis`, `tokenize`) and generates code per class: about
15 ms of start-up on a small VM, a third of the in-process budget. Records list their fields in
`__slots__` and write their `__init__` by hand; this base adds equality, repr and `to_dict`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Record:
    """Fields are the `__slots__` of the class and its bases, in declaration order."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            names.extend(n for n in klass.__dict__.get("__slots__", ()) if not n.startswith("_"))
        cls._fields = tuple(names)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in self._fields)

    def __eq__(self, other: object) -> bool:
        # defining __eq__ leaves records unhashable, as dataclasses with eq are: FrozenRecord hashes
        return type(other) is type(self) and self._values() == other._values()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields) + ")"

    def to_dict(self) -> dict[str, Any]:
        """Fields as plain values, nested records and containers included (like dataclasses.asdict)."""
        return {n: _plain(getattr(self, n)) for n in self._fields}


class FrozenRecord(Record):
    """A record that is never changed after construction, so it can be a dict key."""

    __slots__ = ()

    def __hash__(self) -> int:
        return hash(self._values())


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
