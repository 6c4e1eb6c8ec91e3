"""`prik bench pipeline`: publish -> router -> consumer -> LPS, each in its own process.

Three stages run one after the other on the same broker, with the same message
bytes and the same rate (or, with `saturate`, the same count as fast as it goes):

- `raw`: aiokafka produce -> aiokafka consume, the floor of any Kafka pipeline here;
- `two_hop`: aiokafka produce -> transactional pass-through (consume, produce,
  send offsets, commit; `prik bench`'s) -> aiokafka consume, the floor of any
  exactly-once router;
- `pipeline`: prik's `Publisher` -> `python -m prik broker run` -> the clinic
  consumer delivering to an in-process LPS (or, with `webhook`, the reference LPS
  over HTTP) in its own process.

Latency is publish -> arrival on the one machine's wall clock (the CloudEvents
`time`, or the baselines' `bench-sent` header), in HDR histograms kept by the
receiving process. Every ratio compares stages of the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import DirectoryEntry, PrikError, Topics, codec, parse_tenants
from deploy.directory import load_directory
from deploy.topics import apply_topics, delete_topics_under
from prik.settings import KafkaSettings

from .latency import peak_rss_mb
from .load import CLINICS
from .processes import Child
from .routing import LPS, SENDER, TENANTS_TOML

__all__ = ["PipelineOptions", "bench_pipeline"]

_CHILD = "prik.bench.child"
_STARTUP_SECONDS = 120.0
_POLL = 0.25
_LATENCY_KEYS = ("p50", "p99", "p999", "max")

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    rate: float = 1000.0
    seconds: float = 30.0
    saturate: bool = False
    webhook: bool = False

    @property
    def total(self) -> int:
        return max(1, round(self.rate * self.seconds))

    @property
    def drain_seconds(self) -> float:
        """How long the receiving end may take after the last publish before the rest counts as backlog."""
        return max(60.0, 4 * self.seconds) if self.saturate else max(30.0, self.seconds)


class _Run:
    """The folder, environment and processes of one benchmark run."""

    def __init__(self, kafka: KafkaSettings, folder: Path, options: PipelineOptions, status: Say) -> None:
        self.kafka = kafka
        self.folder = folder
        self.options = options
        self.status = status
        self.prefix = f"benchp-{int(time.time())}-{secrets.token_hex(2)}"
        self.tenants_file = folder / "tenants.toml"
        self.tenants_file.write_text(TENANTS_TOML)
        self.children: list[Child] = []

    def env(self, prefix: str, log_level: str = "warning") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRIK_METRICS_")}
        return env | {
            "PRIK_KAFKA__BOOTSTRAP": self.kafka.bootstrap,
            "PRIK_KAFKA__SECURITY_PROTOCOL": self.kafka.security_protocol,
            "PRIK_TOPIC_PREFIX": prefix,
            "PRIK_TENANTS": str(self.tenants_file),
            "PRIK_LOG_LEVEL": log_level,
            # The bench's own routers: any key will do, the records are their own.
            "PRIK_ROUTE_KEY": secrets.token_urlsafe(32),
        }

    def child(self, name: str, role: str, prefix: str, config: dict[str, Any] | None = None) -> Child:
        args = [_CHILD, role, codec.dumps(config or {}).decode()]
        child = Child(name, args, self.env(prefix), self.folder / f"{name}.log")
        self.children.append(child)
        return child

    def router(self, prefix: str) -> Child:
        args = ["prik", "broker", "run", "--instance", "bench"]
        child = Child("router", args, self.env(prefix), self.folder / "router.log", quiet=True)
        self.children.append(child)
        return child

    def publisher(self, prefix: str, mode: str) -> Child:
        config = {
            "mode": mode,
            "rate": self.options.rate,
            "total": self.options.total,
            "saturate": self.options.saturate,
        }
        return self.child(f"{mode}-publisher-{prefix}", "publish", prefix, config)

    async def provision(self, prefix: str, *, directory: bool = False) -> Topics:
        topics = Topics(prefix)
        await apply_topics(self.kafka, topics, parse_tenants(TENANTS_TOML))
        if directory:
            await load_directory(self.kafka, topics, [DirectoryEntry(sor=sor, lps=LPS) for sor in CLINICS])
        return topics

    def kill_all(self) -> None:
        for child in self.children:
            child.kill()


def _delivered(receiver: Child) -> int:
    return int(receiver.progress.get("delivered", 0))


async def _until(
    condition: Callable[[], bool], within: float, watched: list[Child], tick: Callable[[], None]
) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        for child in watched:
            child.check()
        if time.monotonic() > deadline:
            return False
        tick()
        await asyncio.sleep(_POLL)
    return True


async def _stage(
    run: _Run, name: str, publisher: Child, receiver: Child, middle: list[Child]
) -> dict[str, Any]:
    """Start the processes, warm up, publish, drain; the stage's figures."""
    watched = [*middle, receiver, publisher]
    for child in watched:
        await child.start()

    def tick(phase: str) -> Callable[[], None]:
        return lambda: run.status(f"{name}: {phase}, {_delivered(receiver)} delivered")

    warm = await _until(
        lambda: int(receiver.progress.get("warm", 0)) > 0, _STARTUP_SECONDS, watched, tick("starting")
    )
    if not warm:
        msg = f"bench {name}: nothing arrived within {_STARTUP_SECONDS:.0f} s: {receiver.tail()}"
        raise PrikError(msg)
    publisher.say("go")
    await _until(
        lambda: publisher.final is not None, 10 * run.options.seconds + 600, watched, tick("publishing")
    )
    sent = int((publisher.final or {}).get("sent", 0))
    await _until(
        lambda: _delivered(receiver) >= sent, run.options.drain_seconds, [*middle, receiver], tick("draining")
    )
    rss: dict[str, float | None] = {
        "publisher": publisher.final.get("peak_rss_mb") if publisher.final else None
    }
    # Those that cannot report their own: read while they still run.
    for child in middle:
        if child.final is None:
            rss[child.name] = child.peak_rss_mb()
    got = await receiver.finish()
    rss["receiver"] = got["peak_rss_mb"]
    for child in middle:
        if child.name == "router":
            await child.terminate()
        else:
            rss[child.name] = (await child.finish()).get("peak_rss_mb")
    return _figures(sent, publisher.final or {}, got, rss)


def _figures(
    sent: int, published: dict[str, Any], got: dict[str, Any], rss: dict[str, float | None]
) -> dict[str, Any]:
    started, finished, last = published.get("started_at"), published.get("finished_at"), got.get("last_at")
    delivered = int(got["delivered"])
    return {
        "sent": sent,
        "delivered": delivered,
        "duplicates": int(got["duplicates"]),
        "backlog": max(0, sent - delivered),
        "publish_per_second": sent / (finished - started)
        if started and finished and finished > started
        else None,
        "end_to_end_per_second": delivered / (last - started)
        if started and last and last > started
        else None,
        "latency_ms": got["latency_ms"],
        "peak_rss_mb": rss,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float | None]:
    out = {key: _ratio(a["latency_ms"][key], b["latency_ms"][key]) for key in _LATENCY_KEYS}
    for key in ("end_to_end_per_second", "publish_per_second"):
        out[key] = _ratio(a[key], b[key])
    return out


async def bench_pipeline(
    kafka: KafkaSettings, folder: Path, options: PipelineOptions, say: Say, status: Say
) -> dict[str, Any]:
    """Run the three stages and compare them; `say` for milestones, `status` for live counters."""
    run = _Run(kafka, folder, options, status)
    stages: dict[str, dict[str, Any]] = {}
    try:
        raw = f"{run.prefix}-raw"
        say("raw: aiokafka produce -> consume")
        raw_topics = await run.provision(raw)
        receiver = run.child(
            "raw-receiver", "receive", raw, {"topic": raw_topics.ingress(SENDER), "group": f"{raw}-r"}
        )
        stages["raw"] = await _stage(run, "raw", run.publisher(raw, "raw"), receiver, [])

        two = f"{run.prefix}-tx"
        say("two_hop: aiokafka produce -> transactional pass-through -> consume")
        two_topics = await run.provision(two)
        receiver = run.child(
            "tx-receiver", "receive", two, {"topic": two_topics.deliver(LPS), "group": f"{two}-r"}
        )
        passthrough = run.child("passthrough", "passthrough", two)
        stages["two_hop"] = await _stage(run, "two_hop", run.publisher(two, "raw"), receiver, [passthrough])

        lps = "the reference LPS over HTTP" if options.webhook else "an in-process LPS"
        say(f"pipeline: Publisher -> prik broker run -> clinic consumer -> {lps}")
        await run.provision(run.prefix, directory=True)
        clinic = run.child("consumer", "clinic", run.prefix, {"webhook": options.webhook})
        router = run.router(run.prefix)
        stages["pipeline"] = await _stage(
            run, "pipeline", run.publisher(run.prefix, "prik"), clinic, [router]
        )
    finally:
        run.kill_all()
        for prefix in (f"{run.prefix}-raw", f"{run.prefix}-tx", run.prefix):
            with contextlib.suppress(Exception):
                await delete_topics_under(kafka, prefix)
    return _report(options, stages)


def _report(options: PipelineOptions, stages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    pipe, two, raw = stages["pipeline"], stages["two_hop"], stages["raw"]
    ratios = {
        "pipeline_vs_two_hop": _compare(pipe, two),
        "pipeline_vs_raw": _compare(pipe, raw),
        "two_hop_vs_raw": _compare(two, raw),
    }
    p99 = ratios["pipeline_vs_two_hop"]["p99"]
    saturation = ratios["pipeline_vs_raw"]["end_to_end_per_second"]
    return {
        "mode": "saturate" if options.saturate else "rate",
        "rate": None if options.saturate else options.rate,
        "seconds": options.seconds,
        "messages": options.total,
        "webhook": options.webhook,
        "stages": stages,
        "ratios": ratios,
        "targets": {
            "kept_up": pipe["backlog"] == 0,
            "p99_within_2x_two_hop": None if options.saturate or p99 is None else p99 <= 2,
            "saturation_at_least_quarter_raw": (saturation >= 0.25)
            if options.saturate and saturation
            else None,
        },
        "peak_rss_mb": peak_rss_mb(),
    }
