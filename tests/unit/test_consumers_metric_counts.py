"""The consumer's outcome and attempt counters, counted in plain integers and handed over when scraped.

Every scrape sees every count exactly once, whatever the order of counting and scraping,
also through a registry restricted to some names; a scrape with nothing new adds nothing.
"""

from __future__ import annotations

import random

from prometheus_client.parser import text_string_to_metric_families

from consumers.stats import ATTEMPT_RESULTS, ConsumerMetrics
from contracts import Outcome
from prik.metrics import exposition


def _scraped(metrics: ConsumerMetrics) -> dict[tuple[str, str], float]:
    got: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(exposition(metrics.registry).decode()):
        for sample in family.samples:
            if sample.name == "prik_deliveries_total":
                got["outcome", sample.labels["outcome"]] = sample.value
            elif sample.name == "prik_delivery_attempts_total":
                got["result", sample.labels["result"]] = sample.value
    return got


def test_every_count_reaches_every_later_scrape_once() -> None:
    rng = random.Random(12)
    metrics = ConsumerMetrics("lps-xmo")
    expected = {
        ("outcome", o.value): 0.0 for o in (Outcome.DELIVERED, Outcome.EXPIRED, Outcome.DEAD_LETTERED)
    }
    expected |= {("result", r): 0.0 for r in ATTEMPT_RESULTS}
    assert _scraped(metrics) == expected  # every series from the start, at 0
    for _ in range(40):
        for _ in range(rng.randrange(0, 50)):
            outcome = rng.choice(list(Outcome))
            metrics.outcome(outcome)
            expected["outcome", outcome.value] = expected.get(("outcome", outcome.value), 0.0) + 1
            result = rng.choice(ATTEMPT_RESULTS)
            metrics.attempt(result)
            expected["result", result] += 1
        assert _scraped(metrics) == expected
        assert _scraped(metrics) == expected  # nothing new: nothing added


def test_a_restricted_scrape_is_up_to_date_too() -> None:
    metrics = ConsumerMetrics("lps-xmo")
    for _ in range(3):
        metrics.outcome(Outcome.DELIVERED)
    restricted = metrics.registry.restricted_registry(["prik_deliveries_total"])
    samples = [
        s for metric in restricted.collect() for s in metric.samples if s.name == "prik_deliveries_total"
    ]
    assert {s.labels["outcome"]: s.value for s in samples}["delivered"] == 3
