"""`python -m prik conformance` end to end: against the reference LPS process, a careless and a slow endpoint.

No Kafka: conformance talks HTTP only. Each endpoint is either the reference
server as its own process (`python -m consumers.reference_server`) or a small
aiohttp app served by the test while the command runs as a child process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from aiohttp import web

from consumers import generate_secret
from consumers.serving import serve
from deploy import free_port

ROOT = Path(__file__).resolve().parents[2]
SIGNATURE_REFUSALS = {
    "signature-wrong-secret",
    "signature-missing-webhook-id",
    "signature-missing-webhook-timestamp",
    "signature-missing-webhook-signature",
    "signature-tampered-body",
    "signature-tampered-id",
    "signature-stale-timestamp",
    "signature-future-timestamp",
}


def _env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PRIK_")}
    env["PYTHONWARNINGS"] = "error"
    return env


def _argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "prik", "conformance", *args]


async def _conformance(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    """Run the command as a child while this loop keeps serving the test's endpoints."""
    child = await asyncio.create_subprocess_exec(
        *_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=ROOT
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(), timeout)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "lps.secrets"
    path.write_text(generate_secret() + "\n", encoding="utf-8")
    return path


@contextmanager
def reference_server(secret_file: Path, task_api: str | None = None) -> Iterator[str]:
    """`python -m consumers.reference_server` on a free port; yields its webhook URL."""
    port = free_port()
    argv = [sys.executable, "-m", "consumers.reference_server", "--port", str(port)]
    argv += ["--secret-file", str(secret_file)]
    if task_api:
        argv += ["--task-api", task_api]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{port}/webhook"
        assert server.stdout.readline().strip() == f"reference LPS listening on {url}"
        yield url
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.communicate(timeout=20)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()


@asynccontextmanager
async def endpoint(handler: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/webhook", handler)
    runner, port = await serve(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}/webhook"
    finally:
        await runner.cleanup()


async def test_the_reference_lps_passes_every_scenario_json_and_junit(
    secret_file: Path, tmp_path: Path
) -> None:
    task_api = f"http://127.0.0.1:{free_port()}"
    junit = tmp_path / "conformance.xml"
    with reference_server(secret_file, task_api) as url:
        code, out, err = await _conformance(
            "--url",
            url,
            "--secret-file",
            str(secret_file),
            "--task-api",
            task_api,
            "--json",
            "--junit",
            str(junit),
        )
    assert code == 0, out + err
    assert err == ""
    report = json.loads(out)
    assert set(report) == {"url", "timeout", "passed", "counts", "seconds", "scenarios"}
    assert report["passed"] is True
    assert report["url"] == url
    assert report["timeout"] == 15.0
    names = [scenario["name"] for scenario in report["scenarios"]]
    assert set(names) >= SIGNATURE_REFUSALS | {
        "task-round-trip",
        "answer-within-timeout",
        "duplicate-webhook-id",
    }
    assert {scenario["result"] for scenario in report["scenarios"]} == {"pass"}
    assert report["counts"] == {"pass": len(names), "fail": 0, "skip": 0}
    suite = ET.parse(junit).getroot().find("testsuite")  # noqa: S314  the command's own output
    assert suite is not None
    assert suite.get("tests") == str(len(names))
    assert suite.get("failures") == "0"
    assert [case.get("name") for case in suite.iter("testcase")] == names


async def test_the_table_for_people(secret_file: Path) -> None:
    with reference_server(secret_file) as url:
        code, out, err = await _conformance("--url", url, "--secret-file", str(secret_file))
    assert code == 0, out + err
    assert "signature-stale-timestamp" in out
    assert "PASS" in out
    assert "FAIL" not in out
    # Without --task-api the round trip is named as not checked, and the run still passes.
    assert "SKIP" in out
    assert "21 pass, 0 fail, 1 skip" in out


async def test_a_careless_endpoint_fails_on_the_signature_scenarios(
    secret_file: Path, tmp_path: Path
) -> None:
    async def accept_everything(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    junit = tmp_path / "careless.xml"
    async with endpoint(accept_everything) as url:
        code, out, err = await _conformance(
            "--url", url, "--secret-file", str(secret_file), "--json", "--junit", str(junit)
        )
    assert code == 1, err
    report = json.loads(out)
    assert report["passed"] is False
    failed = {s["name"] for s in report["scenarios"] if s["result"] == "fail"}
    assert failed == SIGNATURE_REFUSALS
    # One line on stderr, naming what failed; nothing else (no library chatter).
    assert err.startswith("prik: error: 8 of 22 scenarios failed: signature-wrong-secret, ")
    assert err.count("\n") == 1
    suite = ET.parse(junit).getroot().find("testsuite")  # noqa: S314  the command's own output
    assert suite is not None
    assert {c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None} == failed


@pytest.mark.timeout(90)
async def test_a_slow_endpoint_fails_on_the_timeout_in_bounded_time(secret_file: Path) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await release.wait()  # slower than --timeout, until the test ends
        return web.Response(text="late")

    async with endpoint(slow) as url:
        try:
            code, out, err = await _conformance(
                "--url", url, "--secret-file", str(secret_file), "--timeout", "1", "--json", timeout=60
            )
        finally:
            release.set()
    assert code == 1, err
    results = {s["name"]: s for s in json.loads(out)["scenarios"]}
    assert results["answer-within-timeout"]["result"] == "fail"
    assert "no answer within 1 s" in results["answer-within-timeout"]["reason"]
    assert results["deliver-video-queue"]["reason"] == "a signed video-queue message: no answer within 1 s"
    assert err.startswith("prik: error: ")
    assert "answer-within-timeout" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--url", "http://lps.example/hook"), "webhook URL must be https://"),
        (("--url", "not a url at all"), "webhook URL"),
        (("--url", "http://127.0.0.1:9/w", "--secret", "not-a-secret"), "must start with whsec_"),
        (("--url", "http://127.0.0.1:9/w", "--secret", "whsec_c2hvcnQ="), "24 to 64 bytes"),
        (("--url", "http://127.0.0.1:9/w", "--task-api", "https://127.0.0.1:1"), "--task-api must be"),
        (("--url", "http://127.0.0.1:9/w", "--clinic", "12"), "--clinic must be a SOR code"),
        (("--url", "http://127.0.0.1:9/w", "--junit", "/no/such/folder/x.xml"), "its folder does not exist"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(secret_file: Path, args: tuple[str, ...], says: str) -> None:
    given = args if "--secret" in args else (*args, "--secret-file", str(secret_file))
    done = subprocess.run(_argv(*given), capture_output=True, text=True, env=_env(), timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("prik: error: ")
    assert says in done.stderr
    assert done.stderr.count("\n") == 1
    assert "c2hvcnQ" not in done.stderr  # a secret is never echoed


def test_no_secret_at_all_is_a_usage_error() -> None:
    done = subprocess.run(
        _argv("--url", "http://127.0.0.1:9/w"),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "prik: error: give the endpoint's secret: "
        "--secret-file FILE, PRIK_WEBHOOK_SECRETS or --secret whsec_...\n"
    )


async def test_a_task_api_port_in_use_is_a_usage_error(secret_file: Path) -> None:
    async def never(_request: web.Request) -> web.Response:
        raise AssertionError

    async with endpoint(never) as url:
        port = url.split(":")[2].split("/")[0]
        code, _out, err = await _conformance(
            "--url", url, "--secret-file", str(secret_file), "--task-api", f"http://127.0.0.1:{port}"
        )
    assert code == 2
    assert err.startswith(f"prik: error: --task-api 127.0.0.1:{port}: cannot listen there")
