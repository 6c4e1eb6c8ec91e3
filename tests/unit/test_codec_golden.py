"""The codec decides every input of the golden corpus exactly as the codec of commit c713fe8 did.

`tests/data/codec_golden/corpus.jsonl.gz` holds valid messages of every type, mutations of
them (fields dropped or mistyped, times of every shape, CPR numbers in ids and texts,
unknown fields, duplicate keys), binary mode with edited and null headers, and a hand-made
hostile corpus (duplicates at every level, also after unescaping, BOM and trailing bytes,
NaN and huge numbers, lone surrogates, the 1023/1024-byte comma count threshold, deep
nesting), each handed over as bytes, bytearray, memoryview or str; and with each, how the
old codec decided it. `make_golden.py` beside it wrote it from the old code in git.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections import Counter
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from contracts import HttpsUrl, MessageType, ParseError, Patient, example_messages, parse, to_bytes

CORPUS = Path(__file__).resolve().parents[1] / "data" / "codec_golden" / "corpus.jsonl.gz"
GROUPS = ("valid", "binary", "binary-edited", "binary-headers", "mutated", "edges", "hostile")


@cache
def _corpus() -> tuple[dict[str, Any], ...]:
    with gzip.open(CORPUS, "rt", encoding="utf-8") as lines:
        return tuple(json.loads(line) for line in lines)


def _cases(kind: str, group: str | None = None) -> list[dict[str, Any]]:
    return [c for c in _corpus() if c["kind"] == kind and (group is None or c["group"] == group)]


def fields_of(model: BaseModel) -> list[list[Any]]:
    """Every field at every level: dotted name, Python type, and for times whether held in UTC."""
    found: list[list[Any]] = []
    for name, value in model.__dict__.items():
        if isinstance(value, BaseModel):
            found.append([name, type(value).__name__, None])
            found.extend([f"{name}.{n}", t, u] for n, t, u in fields_of(value))
        else:
            utc = value.tzinfo is UTC if isinstance(value, datetime) else None
            found.append([name, type(value).__name__, utc])
    return found


def _handed(case: dict[str, Any]) -> Any:
    value = base64.b64decode(case["value"])
    shape = case["as"]
    if shape == "bytearray":
        return bytearray(value)
    if shape == "memoryview":
        return memoryview(value)
    if shape == "str":
        return value.decode("utf-8")
    return value


def _headers(case: dict[str, Any]) -> list[tuple[str, bytes | None]] | None:
    if case["headers"] is None:
        return None
    return [(name, None if v is None else base64.b64decode(v)) for name, v in case["headers"]]


def _decide(case: dict[str, Any]) -> list[Any]:
    headers = _headers(case)
    try:
        message = parse(_handed(case), headers)
    except ParseError as exc:
        return ["refused", exc.stage, exc.reason]
    written = to_bytes(message)
    # Written back as the old codec wrote it, which was pydantic's own JSON, and read back the same.
    assert message.__pydantic_serializer__.to_json(message, exclude_none=True) == written
    assert parse(written) == message
    return ["accepted", type(message).__name__, base64.b64encode(written).decode("ascii"), fields_of(message)]


@pytest.mark.parametrize("group", GROUPS)
def test_parse_decides_as_before(group: str) -> None:
    cases = _cases("parse", group)
    assert cases
    differ = [
        (i, case["outcome"][:3], got[:3])
        for i, case in enumerate(cases)
        if (got := _decide(case)) != case["outcome"]
    ]
    assert not differ, (
        f"{len(differ)} of {len(cases)} decided otherwise, e.g. (index, before, now): {differ[:3]}"
    )


def test_the_corpus_covers_what_it_should() -> None:
    """A corpus that lost its valid messages or its refusals would prove nothing."""
    parsed = _cases("parse")
    accepted = Counter(c["outcome"][1] for c in parsed if c["outcome"][0] == "accepted")
    assert {m.__name__ for m in _message_classes()} <= set(accepted)
    assert {c["as"] for c in parsed} == {"bytes", "bytearray", "memoryview", "str"}
    reasons = {c["outcome"][2] for c in parsed if c["outcome"][0] == "refused"}
    assert len(reasons) > 100
    assert "a JSON object has a duplicated key" in reasons
    assert any(v is None for c in parsed if c["headers"] for _, v in c["headers"])
    assert len(_cases("cpr")) >= 500
    assert len(_cases("url")) >= 500


def _message_classes() -> list[type[BaseModel]]:
    classes: list[type[BaseModel]] = [type(message) for message in example_messages().values()]
    assert len(classes) == len(MessageType)
    return classes


def _validator_outcome(check: Any, value: object) -> list[Any]:
    try:
        result = check(value)
    except ValidationError as exc:
        return [
            "refused",
            [[e["type"], e["msg"]] for e in exc.errors(include_url=False, include_input=False)],
        ]
    return ["accepted", *result]


def _cpr(value: object) -> list[Any]:
    cpr = Patient.model_validate({"cpr": value}).__dict__["cpr"]
    return [type(cpr).__name__, cpr.value, str(cpr)]


def test_cpr_numbers_are_decided_as_before() -> None:
    cases = _cases("cpr")
    differ = [c for c in cases if _validator_outcome(_cpr, c["value"]) != c["outcome"]]
    assert not differ, f"{len(differ)} of {len(cases)} CPR inputs decided otherwise"


def test_https_urls_are_decided_as_before() -> None:
    adapter: TypeAdapter[str] = TypeAdapter(HttpsUrl)
    cases = _cases("url")
    differ = [
        c["value"]
        for c in cases
        if _validator_outcome(lambda v: [adapter.validate_python(v)], c["value"]) != c["outcome"]
    ]
    assert not differ, f"{len(differ)} of {len(cases)} URLs decided otherwise, e.g. {differ[:3]}"
