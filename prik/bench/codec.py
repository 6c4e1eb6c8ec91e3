"""Parsing and encoding cost per message against plain orjson on the same bytes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

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


def bench_codec(rounds: int = 2000) -> list[CodecResult]:
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
    return [
        CodecResult(
            "parse (validate) vs orjson.loads",
            _per_call_us(loads_all, rounds) / n,
            _per_call_us(parse_all, rounds) / n,
        ),
        CodecResult(
            "to_bytes vs orjson.dumps",
            _per_call_us(dumps_all, rounds) / n,
            _per_call_us(encode_all, rounds) / n,
        ),
    ]
