"""Saving and comparing parameter records: how artifacts describe themselves.

Place in the pipeline: under every artifact writer and loader. A saved model
keeps the records it was built with (``as_dict``); its loader rebuilds them
(``from_dict``, which refuses unknown fields: they mean another version of
the code wrote the file) and compares them with the running code's
(``check_compatible``), so a model is never silently fed another layout.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def as_dict(record: Any) -> dict:
    """A JSON-ready dict of a config record (tuples become lists)."""
    return dataclasses.asdict(record)


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Rebuild a record of type ``cls`` from ``as_dict`` output.

    Unknown keys are rejected, because they mean the file was written by a
    different version of the code.
    """
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def check_compatible(saved: Any, current: Any, what: str) -> list[str]:
    """Names of fields whose values differ between two records of one type."""
    diffs = []
    for f in dataclasses.fields(current):
        a, b = getattr(saved, f.name), getattr(current, f.name)
        if a != b:
            diffs.append(f"{what}.{f.name}: saved {a!r}, running {b!r}")
    return diffs
