"""Database ids read from requests. An id is ASCII digits naming a value a primary key can
hold: `str.isdigit` also accepts digits such as "²" that `int` refuses, and a number past
64 bits makes the database driver raise instead of finding nothing."""

from __future__ import annotations

# The largest value of a 64-bit signed integer, the widest key PostgreSQL and SQLite store.
MAX_ID = 2**63 - 1


def parse_id(value: object) -> int | None:
    """The id written in `value`, or None when it names none (not a whole number above 0
    that a key can hold)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value <= MAX_ID else None
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()):
        return None
    # More digits than MAX_ID has cannot fit; checked before converting a long string.
    if len(value) > len(str(MAX_ID)):
        return None
    number = int(value)
    return number if 0 < number <= MAX_ID else None


def parse_ids(values: list[str]) -> list[int] | None:
    """Every value as an id, or None when any of them names none."""
    ids = [parse_id(value) for value in values]
    return None if None in ids else [number for number in ids if number is not None]
