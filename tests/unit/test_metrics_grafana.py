"""The Grafana dashboard and the Prometheus scrape config in deploy/ hold to the series prik exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from broker import Incoming, Routed
from broker.metrics import RouterMetrics
from consumers.stats import ConsumerMetrics
from contracts import Topics, parse_tenants
from prik.metrics import SERIES, exposition, set_lags

DEPLOY = Path(__file__).parent.parent.parent / "deploy"
DASHBOARD = DEPLOY / "grafana" / "prik-dashboard.json"
SCRAPE = DEPLOY / "prometheus" / "prometheus.yml"

# DESIGN.md, "Accounting: who causes how much load", word for word: the series and their labels.
DESIGN = {
    "prik_ingress_messages_total": {"tenant", "type", "verdict"},
    "prik_ingress_bytes_total": {"tenant"},
    "prik_deliveries_total": {"lps", "outcome"},
    "prik_delivery_attempts_total": {"lps", "result"},
    "prik_delivery_latency_seconds": {"lps"},
    "prik_lag_records": {"group", "topic", "partition"},
    "prik_oldest_undelivered_seconds": {"lps"},
}
_HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")
_METRIC = re.compile(r"\b(prik_[a-z_]+)\s*(\{[^}]*\})?")
_LABEL_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def _series(name: str) -> tuple[str, set[str]]:
    """The DESIGN series a sample name belongs to, and the labels it may carry."""
    if name in DESIGN:
        return name, DESIGN[name]
    for part in _HISTOGRAM_PARTS:
        base = name.removesuffix(part)
        if base != name and base in DESIGN:
            return base, DESIGN[base] | ({"le"} if part == "_bucket" else set())
    msg = f"{name} is not a series of DESIGN.md"
    raise AssertionError(msg)


def _exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    found = [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    found += [
        (f"variable {var['name']}", var["definition"])
        for var in dashboard["templating"]["list"]
        if var["type"] == "query"
    ]
    return found


def test_the_exported_series_are_those_of_design_md() -> None:
    assert set(DESIGN) == SERIES
    tenants = parse_tenants('[[tenant]]\nid = "lps-xmo"\nrole = "lps"\n')
    router = RouterMetrics(Topics("t"), lambda: tenants)
    router.decided(Incoming("t.ingress.lps-xmo", 0, 0, None, b"{}"), Routed("rejected", "unknown"))
    set_lags(router.lag, "t-router", [("t.ingress.lps-xmo", 0, 0)])
    consumer = ConsumerMetrics("lps-xmo")  # every series of it exists from the start
    consumer.lags("t-lps-xmo", [("t.deliver.lps-xmo", 0, 0)])
    labels: dict[str, set[str]] = {}
    for registry in (router.registry, consumer.registry):
        for family in text_string_to_metric_families(exposition(registry).decode()):
            for sample in family.samples:
                if sample.name.startswith("prik_router_"):
                    continue  # the router's own operational series, besides DESIGN's
                series, _ = _series(sample.name)
                labels.setdefault(series, set()).update(set(sample.labels) - {"le"})
    assert labels == DESIGN


def test_the_dashboard_is_grafana_json_over_design_series_only() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            # Units on every number: the operator reads "12 req/s", not "12".
            assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
    used: set[str] = set()
    for where, expr in _exprs(dashboard):
        metrics = _METRIC.findall(expr)
        assert metrics, (where, expr)
        allowed: set[str] = set()
        for name, selector in metrics:
            series, labels = _series(name)
            used.add(series)
            allowed |= labels
            for label in _LABEL_MATCHER.findall(selector):
                assert label in labels, (where, name, label)
        for grouping in _GROUPING.findall(expr):
            for label in filter(None, (part.strip() for part in grouping.split(","))):
                assert label in allowed, (where, label)
        if "histogram_quantile" in expr:
            assert "_bucket" in expr
            assert re.search(r"by \([^)]*\ble\b", expr), (where, expr)
    # Every series of the accounting is on the page somewhere.
    assert used == SERIES


def test_the_dashboard_shows_what_an_operator_asks_for() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(expr for _, expr in _exprs(dashboard))
    assert "sum by (tenant) (rate(prik_ingress_messages_total" in exprs  # per sender
    assert "sum by (lps) (rate(prik_deliveries_total" in exprs  # per LPS
    assert "histogram_quantile(0.5," in exprs
    assert "histogram_quantile(0.99," in exprs
    assert 'outcome="dead-lettered"' in exprs  # dead letters
    assert 'verdict="rejected"' in exprs
    variables = {var["name"] for var in dashboard["templating"]["list"]}
    assert {"datasource", "tenant", "lps"} <= variables


def test_the_scrape_config_names_the_router_and_the_consumers() -> None:
    text = SCRAPE.read_text()
    jobs = re.findall(r"^\s*- job_name:\s*(\S+)\s*$", text, flags=re.MULTILINE)
    assert jobs == ["prik-router", "prik-consumer"]
    assert text.count("metrics_path: /metrics") == len(jobs)
    targets = re.findall(r"^\s*- ([a-z0-9.-]+:\d+)\s*$", text, flags=re.MULTILINE)
    assert targets
    assert "\t" not in text  # YAML indents with spaces only
