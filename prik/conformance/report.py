"""A run's report: one outcome per scenario, as JSON for machines and JUnit XML for a CI."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # writes XML only, never parses any
from dataclasses import dataclass
from typing import Any

from .verdicts import Result

__all__ = ["Outcome", "Report"]

# Characters XML 1.0 cannot hold at all (ElementTree writes them anyway, and no reader parses the result).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one scenario ended: pass, fail or skip, and why in one line."""

    name: str
    rule: str
    result: Result
    reason: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rule": self.rule,
            "result": self.result.value,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class Report:
    """Every scenario's outcome, in a fixed order, for the endpoint at `url` (credentials left out)."""

    url: str
    timeout: float
    outcomes: tuple[Outcome, ...]
    seconds: float

    def count(self, result: Result) -> int:
        return sum(1 for outcome in self.outcomes if outcome.result is result)

    @property
    def passed(self) -> bool:
        """True when no scenario failed (skipped ones are not run, so they do not fail)."""
        return bool(self.outcomes) and self.count(Result.FAIL) == 0

    def failed(self) -> list[str]:
        return [outcome.name for outcome in self.outcomes if outcome.result is Result.FAIL]

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "timeout": self.timeout,
            "passed": self.passed,
            "counts": {result.value: self.count(result) for result in Result},
            "seconds": round(self.seconds, 3),
            "scenarios": [outcome.to_json() for outcome in self.outcomes],
        }

    def to_junit(self) -> bytes:
        """JUnit XML (the form Jenkins, GitLab and GitHub Actions read): a test case per scenario."""
        suites = ET.Element("testsuites", name="prik conformance")
        suite = ET.SubElement(
            suites,
            "testsuite",
            name="prik conformance",
            tests=str(len(self.outcomes)),
            failures=str(self.count(Result.FAIL)),
            errors="0",
            skipped=str(self.count(Result.SKIP)),
            time=f"{self.seconds:.3f}",
        )
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", name="url", value=_xml_text(self.url))
        ET.SubElement(properties, "property", name="timeout", value=f"{self.timeout:g}")
        for outcome in self.outcomes:
            case = ET.SubElement(
                suite,
                "testcase",
                classname="prik.conformance",
                name=_xml_text(outcome.name),
                time=f"{outcome.seconds:.3f}",
            )
            if outcome.result is Result.FAIL:
                reason = _xml_text(outcome.reason)
                failure = ET.SubElement(case, "failure", message=reason, type="conformance")
                failure.text = f"rule: {_xml_text(outcome.rule)}\n{reason}"
            elif outcome.result is Result.SKIP:
                ET.SubElement(case, "skipped", message=_xml_text(outcome.reason))
            else:
                ET.SubElement(case, "system-out").text = _xml_text(outcome.reason)
        ET.indent(suites)
        text: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
        return text + b"\n"
