"""`python -m consumers.reference_server`: the reference LPS as a process of its own.

For deployments that want a receiving end without a real practice system (the
compose file's sidecar of each consumer): it verifies signatures, drops duplicates
and prints one line per message accepted, until SIGINT/SIGTERM. With `--task-api
URL` it also answers each task request `received` through that task API (the
consumer's `POST /tasks/{id}/status`, or `prik conformance --task-api`'s stand-in).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from contracts import PrikError
from prik.runner import run_to_end

from .reference_lps import Received, ReferenceLps
from .task_answers import TaskAnswerer

__all__ = ["main"]


def _secrets(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        msg = f"--secret-file {path} cannot be read: {exc.strerror or type(exc).__name__}"
        raise PrikError(msg) from None
    secrets = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not secrets:
        msg = f"--secret-file {path} holds no secret (one whsec_... per line)"
        raise PrikError(msg)
    return secrets


def _show(received: Received) -> None:
    # Ids and type only: a message body may hold patient data.
    print(f"accepted {received.message_id} {received.type} for clinic {received.clinic}", flush=True)  # noqa: T201 - this process's output is its log


async def _serve(host: str, port: int, secrets: list[str], task_api: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    answerer = TaskAnswerer(task_api, secrets) if task_api else None

    def on_receive(received: Received) -> None:
        _show(received)
        if answerer is not None:
            answerer.on_receive(received)

    if answerer is not None:
        await answerer.start()
    try:
        async with ReferenceLps(secrets, host=host, port=port, on_receive=on_receive) as lps:
            print(f"reference LPS listening on {lps.url}", flush=True)  # noqa: T201 - as above
            await stop.wait()
    finally:
        if answerer is not None:
            await answerer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m consumers.reference_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8091, help="port to bind (default 8091)")
    parser.add_argument("--secret-file", type=Path, required=True, help="one whsec_... per line")
    parser.add_argument(
        "--task-api",
        metavar="URL",
        help="answer each task request 'received' at URL/tasks/{id}/status, signed with the secrets",
    )
    args = parser.parse_args(argv)
    try:
        run_to_end(_serve(args.host, args.port, _secrets(args.secret_file), args.task_api))
    except PrikError as exc:
        sys.stderr.write(f"reference LPS: error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
