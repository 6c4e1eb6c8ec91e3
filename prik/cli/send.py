"""`prik send ...`, `prik task status` and `prik replies`: a sender's side, from the shell."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from contracts import (
    ConfigError,
    Message,
    NotAuthorisedError,
    Receipt,
    ReferralStatus,
    TaskStatus,
    TaskStatusUpdate,
    VideoQueueEvent,
    rfc3339,
    source_of,
)
from prik.logs import configure_logging
from prik.runner import run_to_end
from prik.settings import Settings, load_settings
from prik.tenants import load_tenants
from producers import (
    Publisher,
    PublishResult,
    read_replies,
    referral_status_notice,
    task_request,
    task_status,
    video_queue_notice,
)

from .app import app

__all__ = ["format_reply", "parse_due", "parse_duration", "parse_when", "replies", "send_app", "task_app"]

send_app = typer.Typer(
    help="Publish a message onto your ingress topic, as tenant --as. Prints the message id and where "
    "Kafka stored it: topic\\[partition]@offset.",
    no_args_is_help=True,
)
task_app = typer.Typer(help="Answer or cancel a task.", no_args_is_help=True)
app.add_typer(send_app, name="send")
app.add_typer(task_app, name="task")

_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_CPR_LIKE_RE = re.compile(r"[0-9]{6}-?[0-9]{4}")


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `1d`, or combinations such as `1h30m`; must be more than zero."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if not text.strip() or match is None:
        msg = f"{text!r} is not a duration: use a whole number with s, m, h or d, e.g. 90s, 15m, 2h, 1h30m"
        raise ConfigError(msg)
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if duration <= timedelta(0):
        msg = f"{text!r}: a duration must be more than zero"
        raise ConfigError(msg)
    return duration


def parse_when(text: str, *, base: datetime, later: bool) -> datetime | None:
    """A duration from `base` (later or earlier: `2d`, `36h`, `90s`), or an RFC 3339 time with zone.

    None when `text` is neither; the caller says what it wanted in its own words.
    """
    try:
        span = parse_duration(text)
    except ConfigError:
        pass
    else:
        return base + span if later else base - span
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def parse_due(text: str) -> datetime:
    """An RFC 3339 time (`2026-12-01T12:00:00Z`), or a duration from now (`2d`, `36h`)."""
    when = parse_when(text, base=datetime.now(UTC), later=True)
    if when is None:
        msg = f"{text!r} is neither a duration (2d, 36h) nor an RFC 3339 time with zone (2026-12-01T12:00Z)"
        raise ConfigError(msg)
    return when


# --- shared options ---------------------------------------------------------------------

As = Annotated[
    str,
    typer.Option(
        "--as", help="Your tenant id: the message goes onto its ingress topic, source urn:prik:<id>."
    ),
]
Clinic = Annotated[str, typer.Option("--clinic", help="The receiving clinic's SOR code (11-18 digits).")]
Cpr = Annotated[
    str | None,
    typer.Option("--cpr", help="The patient's CPR number; travels only inside data, never in keys or logs."),
]
ExpiresIn = Annotated[
    timedelta | None,
    typer.Option(
        "--expires-in",
        parser=parse_duration,
        metavar="DURATION",
        help="Undeliverable after this long, e.g. 90s, 15m, 2h.",
    ),
]
Urgent = Annotated[bool, typer.Option("--urgent", help="Priority urgent instead of normal.")]


def _settings() -> Settings:
    settings = load_settings()
    configure_logging(settings.log_level)
    return settings


def _check_may_send(settings: Settings, tenant: str, message_type: str) -> None:
    """With a tenants file at hand, refuse early what the router would refuse later."""
    if settings.tenants is None:
        return
    known = load_tenants(settings.tenants).get(tenant)
    if known is None:
        msg = f"tenant {tenant} is not in the tenants file {settings.tenants}"
        raise ConfigError(msg)
    if not known.allowed(message_type):
        msg = f"tenant {tenant} may not send {message_type}"
        raise NotAuthorisedError(msg)


def _publish(tenant: str, message: Message, *, raw: bytes | None = None) -> PublishResult:
    settings = _settings()
    if message.source != source_of(tenant):
        # Checked before authorisation: the wrong --as is the likelier mistake than the wrong grant.
        msg = f"message source {message.source} is not urn:prik:{tenant}, the source of --as {tenant}"
        raise ConfigError(msg)
    _check_may_send(settings, tenant, message.type)

    async def work() -> PublishResult:
        async with Publisher(settings.kafka, tenant, settings.topics) as publisher:
            if raw is not None:
                return await publisher.publish_raw(raw)
            return await publisher.publish(message)

    result = run_to_end(work())
    typer.echo(f"{result.message_id} {result.topic}[{result.partition}]@{result.offset}")
    return result


# --- prik send ... ----------------------------------------------------------------------


@send_app.command("video-queue")
def send_video_queue(  # noqa: PLR0917 - typer passes options as parameters
    tenant: As,
    clinic: Clinic,
    event: Annotated[VideoQueueEvent, typer.Option("--event", help="What happened in the queue.")],
    queue_entry: Annotated[str, typer.Option("--queue-entry", help="Your id of the queue entry.")],
    position: Annotated[
        int | None, typer.Option("--position", min=1, help="Place in the queue, 1 = next.")
    ] = None,
    cpr: Cpr = None,
    url: Annotated[str | None, typer.Option("--url", help="https link to the consultation room.")] = None,
    expires_in: ExpiresIn = None,
    urgent: Urgent = False,
) -> None:
    r"""A video-queue advisory: a patient joined, left or was called.

    Without --expires-in the notice expires 15 minutes after it was sent. Example:

        prik send video-queue --as minlaege-video --clinic 123456789012345 \
            --event joined --queue-entry q-4711 --position 3 \
            --url https://video.example.dk/room/4711 --expires-in 15m
    """
    message = video_queue_notice(
        tenant,
        clinic,
        event=event,
        queue_entry_id=queue_entry,
        position=position,
        consultation_url=url,
        cpr=cpr,
        expires_in=expires_in,
        priority="urgent" if urgent else "normal",
    )
    _publish(tenant, message)


@send_app.command("referral-status")
def send_referral_status(  # noqa: PLR0917 - typer passes options as parameters
    tenant: As,
    clinic: Clinic,
    referral: Annotated[str, typer.Option("--referral", help="The municipality's referral id.")],
    municipality: Annotated[str, typer.Option("--municipality", help="Kommunekode, 3 digits (101-860).")],
    offer: Annotated[str, typer.Option("--offer", help="The offer referred to, e.g. TeleKOL.")],
    status: Annotated[ReferralStatus, typer.Option("--status", help="Where the referral stands.")],
    cpr: Annotated[str, typer.Option("--cpr", help="The patient's CPR number (travels only inside data).")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why, e.g. for a rejection.")] = None,
    expires_in: ExpiresIn = None,
    urgent: Urgent = False,
) -> None:
    r"""A municipality's referral-status advisory. Example:

        prik send referral-status --as kommune-0101 --clinic 123456789012345 \
            --referral ref-2026-0042 --municipality 101 --offer TeleKOL \
            --status accepted --cpr 0101901234
    """
    message = referral_status_notice(
        tenant,
        clinic,
        referral_id=referral,
        municipality_code=municipality,
        offer=offer,
        status=status,
        cpr=cpr,
        reason=reason,
        expires_in=expires_in,
        priority="urgent" if urgent else "normal",
    )
    _publish(tenant, message)


@send_app.command("task")
def send_task(  # noqa: PLR0917 - typer passes options as parameters
    tenant: As,
    clinic: Clinic,
    code: Annotated[str, typer.Option("--code", help="What kind of task, e.g. medication-review.")],
    description: Annotated[
        str | None, typer.Option("--description", help="Free text for the clinic.")
    ] = None,
    cpr: Cpr = None,
    due: Annotated[
        datetime | None,
        typer.Option("--due", parser=parse_due, metavar="WHEN", help="RFC 3339 time, or from now: 2d, 36h."),
    ] = None,
    expires_in: ExpiresIn = None,
    urgent: Urgent = False,
) -> None:
    """A task request for a clinic; prints the new task id on a line `task <id>`.

    Follow it with `prik replies --as TENANT`. Example:

        prik send task --as kommune-0101 --clinic 123456789012345 --code medication-review --due 2d
    """
    message = task_request(
        tenant,
        clinic,
        code=code,
        description=description,
        cpr=cpr,
        due=due,
        expires_in=expires_in,
        priority="urgent" if urgent else "normal",
    )
    typer.echo(f"task {message.data.task_id}")
    _publish(tenant, message)


@send_app.command("raw")
def send_raw(
    tenant: As,
    file: Annotated[
        Path, typer.Argument(help="A CloudEvents JSON file (structured mode).", show_default=False)
    ],
) -> None:
    """Publish a CloudEvents JSON file byte for byte, after checking it against the contract.

    An invalid file is not sent: exit 1 with the reason. Example:

        prik send raw --as minlaege-video notice.json
    """
    from contracts import parse  # noqa: PLC0415 - keeps the import list of the common path short

    try:
        value = file.read_bytes()
    except OSError as exc:
        msg = f"{file}: cannot read: {exc.strerror}"
        raise ConfigError(msg) from None
    _publish(tenant, parse(value), raw=value)


# --- prik task status -------------------------------------------------------------------


@task_app.command("status")
def send_task_status(
    task_id: Annotated[str, typer.Argument(help="The task's id (a UUID).", show_default=False)],
    tenant: As,
    status: Annotated[TaskStatus, typer.Option("--status", help="The task's new status (FHIR Task).")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why, e.g. for rejected or failed.")] = None,
) -> None:
    """Send a new status for a task: an LPS answers, the requester may cancel.

    received -> accepted | rejected; accepted -> in-progress <-> on-hold -> completed | failed.
    Example:

        prik task status 3b0f7c2e-6a51-4d0e-9c1a-0d6f2b7e4a11 --as lps-xmo --status accepted
    """
    _publish(tenant, task_status(tenant, task_id, status, reason=reason))


# --- prik replies -----------------------------------------------------------------------


def _safe(text: str) -> str:
    # Reasons are free text an LPS wrote: a CPR typed there stays off the terminal.
    return _CPR_LIKE_RE.sub("<number>", text)


def format_reply(message: Message) -> str:
    """A reply as one line: time, type, and for receipts and task statuses what happened; no patient data."""
    parts = [rfc3339(message.time), message.type]
    if isinstance(message, Receipt):
        data = message.data
        parts += [f"message_id={data.message_id}", f"outcome={data.outcome.value}"]
        if data.reason:
            parts.append(f"reason={_safe(data.reason)!r}")
    elif isinstance(message, TaskStatusUpdate):
        parts += [f"task_id={message.data.task_id}", f"status={message.data.status.value}"]
        if message.data.reason:
            parts.append(f"reason={_safe(message.data.reason)!r}")
    else:
        parts.append(f"id={message.id}")
    return " ".join(parts)


@app.command("replies")
def replies(
    tenant: As,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep waiting for new replies (Ctrl-C ends).")
    ] = False,
) -> None:
    """Receipts and task statuses the router sent back to a sender, oldest first.

    Without --follow it prints what is there now and exits. Example:

        prik replies --as kommune-0101 --follow
    """
    settings = _settings()

    async def work() -> None:
        async for message in read_replies(settings.kafka, settings.topics, tenant, follow=follow):
            typer.echo(format_reply(message))

    run_to_end(work())
