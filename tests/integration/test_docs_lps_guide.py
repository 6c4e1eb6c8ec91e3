"""docs/lps-integration-guide.md runs as written: its shell blocks in order in one shell, its Python block.

No Kafka: the guide certifies the reference LPS with `prik conformance`. The only
thing the test chooses is the two ports (`LPS_PORT`, `TASK_PORT`, which the guide
reads with defaults), so a busy port on this machine cannot fail it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from consumers import WebhookSecrets
from deploy import free_port

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "lps-integration-guide.md"
_BLOCK = re.compile(r"^```(sh|bash|python)\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in _BLOCK.findall(GUIDE.read_text(encoding="utf-8")) if lang == language]


def test_the_guide_has_its_runnable_blocks() -> None:
    shell = [*_blocks("sh"), *_blocks("bash")]
    assert len(shell) >= 5
    assert any("prik conformance" in block for block in shell)
    assert any("python -m consumers.reference_server" in block for block in shell)
    assert len(_blocks("python")) == 1


def test_the_shell_blocks_run_as_written(tmp_path: Path) -> None:
    script = "set -euo pipefail\n" + "\n".join(_blocks("sh") + _blocks("bash"))
    env = {name: value for name, value in os.environ.items() if not name.startswith("PRIK_")}
    # `python` and `prik` as a vendor who installed prik has them.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["LPS_PORT"] = str(free_port())
    env["TASK_PORT"] = str(free_port())
    shell = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the reference LPS it starts goes with it
    )
    try:
        out, err = shell.communicate(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group is gone: nothing was left behind
            os.killpg(shell.pid, signal.SIGTERM)  # whatever the script started and left behind
        if shell.poll() is None:
            shell.kill()
            shell.wait()
    assert shell.returncode == 0, out + err
    assert f"reference LPS listening on http://127.0.0.1:{env['LPS_PORT']}/webhook" in out
    assert "task-round-trip" in out
    assert "22 pass, 0 fail, 0 skip" in out
    assert "\n22\n" in out  # grep -c '<testcase' conformance.xml
    assert out.rstrip().endswith("certified")
    assert (tmp_path / "report.json").is_file()
    assert (tmp_path / "lps.secrets").stat().st_mode & 0o077 == 0


def test_the_python_block_verifies_refuses_and_drops_duplicates() -> None:
    (block,) = _blocks("python")
    scope: dict[str, object] = {}
    exec(compile(block, str(GUIDE), "exec"), scope)  # noqa: S102  the guide's own example, run as a reader would
    handle = scope["handle"]
    secret = scope["SECRET"]
    assert callable(handle)
    assert isinstance(secret, str)
    body = b'{"id": "m-1", "type": "dk.prik.advisory.video-queue.v1"}'
    headers = WebhookSecrets(secret).sign("m-1", body)
    assert handle(body, headers) == 200
    assert handle(body, WebhookSecrets(secret).sign("m-1", body)) == 200  # the duplicate, acknowledged again
    assert handle(body + b" ", headers) == 401
    assert handle(body, {k: v for k, v in headers.items() if k != "webhook-signature"}) == 401
