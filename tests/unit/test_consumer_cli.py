"""`prik consumer run`: where webhook secrets come from, which URLs it takes, and what it never prints.

Most cases run the command in-process with the consumer itself replaced by a
recorder (no Kafka needed); the last ones run the real `python -m prik` process
and read everything it wrote.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
import structlog
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from typer.testing import CliRunner, Result

import prik.cli.consumer as consumer_cli
from consumers import PrintDeliverer, WebhookDeliverer, generate_secret
from consumers.signing import SECRET_REASONS
from prik.cli import commands  # noqa: F401  registers `prik consumer` on the app
from prik.cli.app import app

LOOPBACK_URL = "http://127.0.0.1:8080/hook"
BODY = b'{"id":"m-1"}'
# The variables this command reads; each test says which it sets, the rest are unset.
_QUIET_ENV: dict[str, str | None] = {
    "PRIK_WEBHOOK_SECRETS": None,
    "PRIK_WEBHOOK_SECRET": None,
    "PRIK_LOG_LEVEL": None,
    "PRIK_KAFKA__BOOTSTRAP": "127.0.0.1:1",
}


@dataclass
class Started:
    """What the command handed to `ClinicConsumer`."""

    lps: str
    deliverer: Any
    options: dict[str, Any]


@contextmanager
def _recording() -> Iterator[list[Started]]:
    started: list[Started] = []

    class Recorder:
        def __init__(self, kafka: object, topics: object, lps: str, deliverer: object, **options: Any):
            started.append(Started(lps, deliverer, options))

        async def run(self) -> None:
            return None

    saved = structlog.get_config()  # the command configures logging onto the runner's stderr
    try:
        with patch.object(consumer_cli, "ClinicConsumer", Recorder):
            yield started
    finally:
        structlog.configure(**saved)


def invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[Result, list[Started]]:
    with _recording() as started:
        result = CliRunner().invoke(
            app, ["consumer", "run", "--lps", "lps-xmo", *args], env={**_QUIET_ENV, **(env or {})}
        )
    return result, started


def _one_error_line(result: Result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("prik: error: ")
    return lines[0]


def _verifies(secret: str, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(BODY, headers)
    except WebhookVerificationError:
        return False
    return True


def _started_webhook(result: Result, started: list[Started]) -> WebhookDeliverer:
    assert result.exit_code == 0, result.output
    (run,) = started
    assert isinstance(run.deliverer, WebhookDeliverer)
    # The task endpoint checks answers against exactly the set that signs deliveries.
    assert run.options["task_secret"] is run.deliverer.secrets
    return run.deliverer


def _secret_file(folder: Path, text: str) -> Path:
    path = folder / "lps-xmo.secrets"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


# --- where secrets come from ---------------------------------------------------------------


def test_secret_given_twice_signs_with_both() -> None:
    old, new, unrelated = generate_secret(), generate_secret(), generate_secret()
    result, started = invoke(["--webhook", LOOPBACK_URL, "--secret", old, "--secret", new])
    deliverer = _started_webhook(result, started)
    assert len(deliverer.secrets) == 2
    headers = deliverer.secrets.sign("m-1", BODY)
    assert _verifies(old, headers)
    assert _verifies(new, headers)
    assert not _verifies(unrelated, headers)
    assert old not in result.output
    assert new not in result.output


def test_secret_file_skips_blank_lines_and_comments(tmp_path: Path) -> None:
    old, new = generate_secret(), generate_secret()
    path = _secret_file(tmp_path, f"# lps-xmo, rotated 2026-11\n\n  {old}  \n# the new one:\n{new}\n\n")
    result, started = invoke(["--webhook", LOOPBACK_URL, "--secret-file", str(path)])
    deliverer = _started_webhook(result, started)
    assert len(deliverer.secrets) == 2
    headers = deliverer.secrets.sign("m-1", BODY)
    assert _verifies(old, headers)
    assert _verifies(new, headers)
    assert old not in result.output
    assert new not in result.output


def test_secrets_from_the_environment() -> None:
    old, new = generate_secret(), generate_secret()
    result, started = invoke(["--webhook", LOOPBACK_URL], env={"PRIK_WEBHOOK_SECRETS": f"{old}, {new}"})
    deliverer = _started_webhook(result, started)
    headers = deliverer.secrets.sign("m-1", BODY)
    assert len(deliverer.secrets) == 2
    assert _verifies(old, headers)
    assert _verifies(new, headers)


def test_every_source_adds_to_the_active_set(tmp_path: Path) -> None:
    argv, legacy, env, in_file = (generate_secret() for _ in range(4))
    path = _secret_file(tmp_path, f"{in_file}\n{argv}\n")
    result, started = invoke(
        ["--webhook", LOOPBACK_URL, "--secret", argv, "--secret-file", str(path)],
        env={"PRIK_WEBHOOK_SECRET": legacy, "PRIK_WEBHOOK_SECRETS": f"{env},{argv}"},
    )
    deliverer = _started_webhook(result, started)
    assert len(deliverer.secrets) == 4  # `argv` given three times signs once
    headers = deliverer.secrets.sign("m-1", BODY)
    assert all(_verifies(secret, headers) for secret in (argv, legacy, env, in_file))


def test_the_older_single_secret_variable_still_works() -> None:
    secret = generate_secret()
    result, started = invoke(["--webhook", LOOPBACK_URL], env={"PRIK_WEBHOOK_SECRET": secret})
    deliverer = _started_webhook(result, started)
    assert _verifies(secret, deliverer.secrets.sign("m-1", BODY))


def test_print_mode_takes_secrets_for_the_task_endpoint_only() -> None:
    secret = generate_secret()
    result, started = invoke(["--print"], env={"PRIK_WEBHOOK_SECRETS": secret})
    assert result.exit_code == 0, result.output
    (run,) = started
    assert isinstance(run.deliverer, PrintDeliverer)
    assert _verifies(secret, run.options["task_secret"].sign("m-1", BODY))
    result, started = invoke(["--print"])
    assert result.exit_code == 0, result.output
    assert started[0].options["task_secret"] is None


def test_a_webhook_without_any_secret_is_a_usage_error() -> None:
    line = _one_error_line(invoke(["--webhook", LOOPBACK_URL])[0])
    assert "--secret-file" in line
    assert "PRIK_WEBHOOK_SECRETS" in line


# --- webhook URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/hook",
        "http://127.0.0.1@example.org/hook",
        "http://192.168.1.10:8080/hook",
        "ftp://127.0.0.1/hook",
        "not a url",
    ],
)
def test_webhook_urls_other_than_https_or_loopback_are_refused(url: str) -> None:
    result, started = invoke(["--webhook", url, "--secret", generate_secret()])
    line = _one_error_line(result)
    assert "https://" in line
    assert "example.org" not in line
    assert started == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://[::1]:8080/hook",
        "http://localhost/hook",
        "https://example.org/hook",
    ],
)
def test_https_and_loopback_webhook_urls_are_accepted(url: str) -> None:
    result, started = invoke(["--webhook", url, "--secret", generate_secret()])
    assert _started_webhook(result, started).url == url


# --- secret files that are not usable ------------------------------------------------------------


def test_secret_file_problems_are_one_line(tmp_path: Path) -> None:
    secret = generate_secret()
    missing = _one_error_line(invoke(["--print", "--secret-file", str(tmp_path / "nope")])[0])
    assert "cannot be read" in missing
    folder = _one_error_line(invoke(["--print", "--secret-file", str(tmp_path)])[0])
    assert "cannot be read" in folder
    empty = _secret_file(tmp_path, "# nothing yet\n\n")
    assert "holds no secret" in _one_error_line(invoke(["--print", "--secret-file", str(empty)])[0])
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" + secret.encode())
    assert "UTF-8" in _one_error_line(invoke(["--print", "--secret-file", str(binary)])[0])
    # The secret itself where its file belongs: refused without quoting it.
    line = _one_error_line(invoke(["--print", "--secret-file", secret])[0])
    assert secret not in line
    assert secret.removeprefix("whsec_") not in line
    odd = _one_error_line(invoke(["--print", "--secret-file", str(tmp_path / "a\nb")])[0])
    assert "cannot be read" in odd


def test_a_bad_line_in_a_secret_file_is_named_not_quoted(tmp_path: Path) -> None:
    good = generate_secret()
    bad = "whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode()
    path = _secret_file(tmp_path, f"# ok\n{good}\n{bad}\n")
    line = _one_error_line(invoke(["--webhook", LOOPBACK_URL, "--secret-file", str(path)])[0])
    assert line.startswith(f"prik: error: --secret-file {path} line 3: ")
    assert bad not in line
    assert good not in line


# --- hostile secrets ---------------------------------------------------------------------------

_VALID_BODY = re.compile(r"[A-Za-z0-9+/]*={0,2}")
# Characters a process can carry in argv and the environment (no lone surrogates).
_CHARS = st.characters(exclude_categories=["Cs"])
_HOSTILE = ["\x1b[31m", "\n", "\r", "\t", " ", ",", "#", "é", "-", "_", "=", "%s", "\u2028", "\x85", "'"]


def _valid(secret: str) -> bool:
    """An independent reading of the rule: `whsec_` + standard base64 of 24 to 64 bytes."""
    body = secret.removeprefix("whsec_")
    if body == secret or not _VALID_BODY.fullmatch(body):
        return False
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        return False
    return 24 <= len(key) <= 64


def _spliced(parts: tuple[bytes, int, str]) -> str:
    raw, at, junk = parts
    text = "whsec_" + base64.b64encode(raw).decode()
    at = 6 + at % (len(text) - 5)
    return text[:at] + junk + text[at:]


_MALFORMED = st.one_of(
    st.text(_CHARS, min_size=1),
    st.text(_CHARS).map(lambda tail: "whsec_" + tail),
    st.binary(max_size=23).map(lambda raw: "whsec_" + base64.b64encode(raw).decode()),
    st.binary(min_size=65, max_size=300).map(lambda raw: "whsec_" + base64.b64encode(raw).decode()),
    st.binary(min_size=24, max_size=64).map(lambda raw: "whsec_" + base64.urlsafe_b64encode(raw).decode()),
    st.binary(min_size=24, max_size=64).map(lambda raw: base64.b64encode(raw).decode()),
    st.tuples(st.binary(min_size=24, max_size=64), st.integers(0, 200), st.sampled_from(_HOSTILE)).map(
        _spliced
    ),
)

_HYPOTHESIS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _refused_with_a_fixed_line(result: Result, label: str, secret: str) -> None:
    line = _one_error_line(result)
    # The whole line is the source's name and a fixed reason: nothing of the secret.
    assert line.removeprefix(f"prik: error: {label}: ") in SECRET_REASONS, line
    assert result.stdout == ""
    assert "Traceback" not in result.output
    if len(secret.strip()) >= 8:
        assert secret.strip() not in result.output


@given(_MALFORMED)
@_HYPOTHESIS
def test_malformed_secret_on_the_command_line_is_refused_and_never_echoed(secret: str) -> None:
    assume(not _valid(secret))
    result, started = invoke(
        ["--webhook", LOOPBACK_URL, f"--secret={generate_secret()}", f"--secret={secret}"]
    )
    _refused_with_a_fixed_line(result, "--secret #2", secret)
    assert started == []


@given(_MALFORMED)
@_HYPOTHESIS
def test_malformed_secret_in_the_environment_is_refused_and_never_echoed(secret: str) -> None:
    item = secret.strip()  # the settings split on commas and strip each item
    assume("\x00" not in secret and "," not in secret and item and not _valid(item))
    result, started = invoke(["--webhook", LOOPBACK_URL], env={"PRIK_WEBHOOK_SECRETS": secret})
    _refused_with_a_fixed_line(result, "PRIK_WEBHOOK_SECRETS item 1", secret)
    assert started == []
    # The older variable is taken as it is, not split or stripped.
    result, started = invoke(["--webhook", LOOPBACK_URL], env={"PRIK_WEBHOOK_SECRET": secret})
    _refused_with_a_fixed_line(result, "PRIK_WEBHOOK_SECRET", secret)
    assert started == []


@given(_MALFORMED)
@_HYPOTHESIS
def test_malformed_secret_in_a_file_is_refused_and_never_echoed(secret: str) -> None:
    line = secret.strip()
    assume(secret.splitlines() == [secret] and line and not line.startswith("#") and not _valid(line))
    with tempfile.TemporaryDirectory() as folder:
        path = _secret_file(Path(folder), f"# rotated\n{generate_secret()}\n{secret}\n")
        result, started = invoke(["--webhook", LOOPBACK_URL, "--secret-file", str(path)])
        _refused_with_a_fixed_line(result, f"--secret-file {path} line 3", secret)
    assert started == []


# --- the real process ----------------------------------------------------------------------------


def _prik(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("PRIK_")}
    return subprocess.run(
        [sys.executable, "-m", "prik", "consumer", "run", "--lps", "lps-xmo", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**base, "PRIK_KAFKA__BOOTSTRAP": "127.0.0.1:1", **env},
    )


def test_the_running_consumer_never_logs_or_prints_a_secret(tmp_path: Path) -> None:
    argv, legacy, env_a, env_b, in_file = (generate_secret() for _ in range(5))
    path = _secret_file(tmp_path, f"{in_file}\n")
    done = _prik(
        ["--webhook", LOOPBACK_URL, "--secret", argv, "--secret-file", str(path), "--http-port", "0"],
        {
            "PRIK_WEBHOOK_SECRET": legacy,
            "PRIK_WEBHOOK_SECRETS": f"{env_a},{env_b}",
            "PRIK_LOG_LEVEL": "debug",
        },
    )
    # The URL and secrets were taken (not a usage error); then Kafka at port 1 is not there.
    assert done.returncode == 1, done.stderr
    assert '"count":5' in done.stderr  # how many secrets are active, never which
    assert done.stderr.splitlines()[-1].startswith("prik: error: connecting")
    everything = done.stdout + done.stderr
    for secret in (argv, legacy, env_a, env_b, in_file):
        assert secret not in everything
        assert secret.removeprefix("whsec_") not in everything
        assert secret.removeprefix("whsec_")[:16] not in everything


def test_the_real_command_refuses_plain_http_to_another_host_with_exit_2() -> None:
    secret = generate_secret()
    done = _prik(["--webhook", "http://example.org/hook"], {"PRIK_WEBHOOK_SECRETS": secret})
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert "https://" in line
    assert secret not in done.stdout + done.stderr
    bad = "whsec_" + "A" * 40 + "-_"
    done = _prik(["--webhook", LOOPBACK_URL], {"PRIK_WEBHOOK_SECRETS": bad})
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("prik: error: PRIK_WEBHOOK_SECRETS item 1: ")
    assert bad not in line
