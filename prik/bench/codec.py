"""Parsing and encoding cost per message against plain orjson on the same bytes.

Two more rows measure, in the same run, the least a codec of pydantic models can
cost on these messages, with a model of the same fields and plain types (strings,
numbers, date-times, nested models; no pattern, no limit, no validator). Reading:
pydantic-core's own JSON parser (`validate_json`) on the same bytes. Writing:
orjson writing the models' fields from dicts made before the clock starts
(date-times as objects, dearer to write than the baseline's strings); making the
dicts is left out (pydantic-core's own `to_json` is slower still, which is why
prik's `to_bytes` hands orjson dicts). prik's `parse` and `to_bytes` do that much
and more (CloudEvents and prik rules, the duplicate-key check, CPR checks, making
the dicts and leaving out None fields), so their ratios cannot fall below these.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, create_model

from contracts import example_messages, parse, to_bytes

__all__ = ["CodecResult", "bench_codec"]


@dataclass(frozen=True, slots=True)
class CodecResult:
    operation: str
    baseline_us: float
    prik_us: float

    @property
    def ratio(self) -> float:
        return self.prik_us / self.baseline_us


def _per_call_us(fn: Callable[[], object], rounds: int) -> float:
    # Best of five: the least disturbed run on a shared, noisy machine.
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = min(best, time.perf_counter() - began)
    return best / rounds * 1e6


def _is_time(text: str) -> bool:
    if "T" not in text:
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _plain_type(name: str, value: Any) -> Any:  # noqa: ANN401  any decoded JSON value, any annotation
    if isinstance(value, dict):
        return _plain_model(name, value)
    if isinstance(value, str) and _is_time(value):
        return datetime
    if isinstance(value, list):
        return list[Any]
    return type(value)


def _plain_model(name: str, obj: dict[str, Any]) -> type[BaseModel]:
    """A model with `obj`'s fields and plain types: what pydantic-core costs before any rule."""
    fields: dict[str, Any] = {key: (_plain_type(f"{name}_{key}", value), ...) for key, value in obj.items()}
    return create_model(name, **fields)


def _as_dicts(model: BaseModel) -> dict[str, Any]:
    fields = model.__dict__.copy()
    for name, value in fields.items():
        if isinstance(value, BaseModel):
            fields[name] = _as_dicts(value)
    return fields


def _floors(encoded: list[bytes], rounds: int, n: int) -> tuple[float, float]:
    """Per message: reading `encoded` into plain models (pydantic-core), and writing their fields (orjson)."""
    models = [_plain_model(f"Plain{i}", orjson.loads(raw)) for i, raw in enumerate(encoded)]
    validators = [(model.__pydantic_validator__, raw) for model, raw in zip(models, encoded, strict=True)]
    instances = [model.model_validate_json(raw) for model, raw in zip(models, encoded, strict=True)]
    trees = [_as_dicts(instance) for instance in instances]
    # The floor writes what the bytes hold, or it would be a floor of less work.
    for tree, raw in zip(trees, encoded, strict=True):
        if orjson.loads(orjson.dumps(tree, option=orjson.OPT_UTC_Z)) != orjson.loads(raw):
            msg = "bench codec: the plain model does not write what it read"
            raise AssertionError(msg)

    def read_all() -> None:
        for validator, raw in validators:
            validator.validate_json(raw)

    def write_all() -> None:
        for tree in trees:
            orjson.dumps(tree, option=orjson.OPT_UTC_Z)

    return _per_call_us(read_all, rounds) / n, _per_call_us(write_all, rounds) / n


def bench_codec(rounds: int = 2000) -> list[CodecResult]:
    """prik's codec against orjson, and the pydantic floor against orjson, per message."""
    messages = list(example_messages().values())
    encoded = [to_bytes(m) for m in messages]
    plain = [orjson.loads(b) for b in encoded]

    def parse_all() -> None:
        for raw in encoded:
            parse(raw)

    def loads_all() -> None:
        for raw in encoded:
            orjson.loads(raw)

    def encode_all() -> None:
        for message in messages:
            to_bytes(message)

    def dumps_all() -> None:
        for value in plain:
            orjson.dumps(value)

    n = len(messages)
    loads_us, dumps_us = _per_call_us(loads_all, rounds) / n, _per_call_us(dumps_all, rounds) / n
    read_floor, write_floor = _floors(encoded, rounds, n)
    return [
        CodecResult("parse (validate) vs orjson.loads", loads_us, _per_call_us(parse_all, rounds) / n),
        CodecResult("to_bytes vs orjson.dumps", dumps_us, _per_call_us(encode_all, rounds) / n),
        CodecResult("floor: plain model, pydantic-core read vs orjson.loads", loads_us, read_floor),
        CodecResult("floor: orjson writing the fields vs orjson.dumps", dumps_us, write_floor),
    ]
