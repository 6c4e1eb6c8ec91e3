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


def _least_us(work: dict[str, Callable[[], object]], rounds: int, repeats: int = 15) -> dict[str, float]:
    """Each call's least time in µs over `repeats` runs of `rounds` calls, the calls taking turns.

    Taking turns puts each figure and its baseline in the same seconds of a shared,
    noisy machine (one after the other, the orjson baselines alone varied 1.1-2.0 µs
    between runs); the least run is the least disturbed.
    """
    best = dict.fromkeys(work, float("inf"))
    for _ in range(repeats):
        for name, fn in work.items():
            began = time.perf_counter()
            for _ in range(rounds):
                fn()
            best[name] = min(best[name], time.perf_counter() - began)
    return {name: seconds / rounds * 1e6 for name, seconds in best.items()}


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


def _floors(encoded: list[bytes], decoded: list[Any]) -> dict[str, Callable[[], object]]:
    """Reading `encoded` into plain models (pydantic-core), and writing their fields (orjson)."""
    models = [_plain_model(f"Plain{i}", obj) for i, obj in enumerate(decoded)]
    validators = [(model.__pydantic_validator__, raw) for model, raw in zip(models, encoded, strict=True)]
    instances = [model.model_validate_json(raw) for model, raw in zip(models, encoded, strict=True)]
    trees = [instance.model_dump() for instance in instances]
    # The floor writes what the bytes hold, or it would be a floor of less work.
    for tree, obj in zip(trees, decoded, strict=True):
        if orjson.loads(orjson.dumps(tree, option=orjson.OPT_UTC_Z)) != obj:
            msg = "bench codec: the plain model does not write what it read"
            raise AssertionError(msg)

    def read_all() -> None:
        for validator, raw in validators:
            validator.validate_json(raw)

    def write_all() -> None:
        for tree in trees:
            orjson.dumps(tree, option=orjson.OPT_UTC_Z)

    return {"read_floor": read_all, "write_floor": write_all}


def bench_codec(rounds: int = 1000) -> list[CodecResult]:
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
    work = {"loads": loads_all, "parse": parse_all, "dumps": dumps_all, "to_bytes": encode_all}
    us = {name: total / n for name, total in _least_us(work | _floors(encoded, plain), rounds).items()}
    return [
        CodecResult("parse (validate) vs orjson.loads", us["loads"], us["parse"]),
        CodecResult("to_bytes vs orjson.dumps", us["dumps"], us["to_bytes"]),
        CodecResult("floor: plain model, pydantic-core read vs orjson.loads", us["loads"], us["read_floor"]),
        CodecResult("floor: orjson writing the fields vs orjson.dumps", us["dumps"], us["write_floor"]),
    ]
