"""`prik conformance`: certify an LPS webhook endpoint against DESIGN.md "Webhook delivery", without Kafka.

Pure scenario definitions (`scenarios`, `summaries`, judged in `verdicts`), the
probes they send (`probes`), an HTTP runner (`runner`), the stand-in of the
consumer's task API for the task round trip (`taskapi`) and the report (`report`).
"""

from .probes import DELIVERED_TYPES, Expect, Kit, Probe, sample_message
from .report import Outcome, Report
from .runner import ConformanceRunner, shown_url
from .scenarios import SCENARIOS, Scenario
from .summaries import SUMMARIES, Summary
from .taskapi import TaskAnswerSeen, TaskApiStandIn, parse_task_api
from .verdicts import Answer, Exchange, Result, Verdict, judge_exchanges

__all__ = [
    "DELIVERED_TYPES",
    "SCENARIOS",
    "SUMMARIES",
    "Answer",
    "ConformanceRunner",
    "Exchange",
    "Expect",
    "Kit",
    "Outcome",
    "Probe",
    "Report",
    "Result",
    "Scenario",
    "Summary",
    "TaskAnswerSeen",
    "TaskApiStandIn",
    "Verdict",
    "judge_exchanges",
    "parse_task_api",
    "sample_message",
    "shown_url",
]
