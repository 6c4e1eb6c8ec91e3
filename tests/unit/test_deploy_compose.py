"""deploy/compose/ and the Dockerfile: Debian's docker-compose reads the file, and it says what prik reads.

Docker cannot run here, so `docker-compose config` (it parses, merges the
extension fields and checks the file against the Compose schema) is the engine's
view of the file; the checks after it hold it to DESIGN.md and to prik's settings.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from consumers.signing import WebhookSecrets, generate_secret
from prik.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
TENANTS = ROOT / "deploy" / "tenants.example.toml"
SCRAPE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PRIK_VARIABLE = re.compile(r"\bPRIK_[A-Z0-9_]+\b")


def setting_names() -> set[str]:
    """Every variable `Settings` reads: PRIK_<FIELD>, and PRIK_<FIELD>__<SUB> for nested models."""
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names.update(f"PRIK_{name.upper()}__{sub.upper()}" for sub in kind.model_fields)
        else:
            names.add(f"PRIK_{name.upper()}")
    return names


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.fail("docker-compose is not installed: run `make tools` (Debian's docker-compose package)")
    done = subprocess.run(
        [tool, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def lps_ids() -> list[str]:
    parsed = tomllib.loads(TENANTS.read_text(encoding="utf-8"))
    return [t["id"] for t in parsed["tenant"] if t["role"] == "lps"]


def test_every_prik_variable_in_the_compose_file_is_a_setting() -> None:
    used = set(PRIK_VARIABLE.findall(COMPOSE.read_text(encoding="utf-8")))
    assert used, "the compose file configures prik through PRIK_* variables"
    assert used <= setting_names(), f"not settings of prik: {sorted(used - setting_names())}"


def test_the_setting_names_come_from_settings() -> None:
    # The parser above must see the nested Kafka settings and the flat ones alike.
    names = setting_names()
    assert {
        "PRIK_KAFKA__BOOTSTRAP",
        "PRIK_KAFKA__PASSWORD_FILE",
        "PRIK_TENANTS",
        "PRIK_METRICS_PORT",
    } <= names
    assert "PRIK_BOOTSTRAP" not in names


def test_three_kraft_nodes_each_broker_and_controller(compose: dict[str, Any]) -> None:
    services = compose["services"]
    nodes = sorted(name for name in services if name.startswith("kafka-"))
    assert nodes == ["kafka-1", "kafka-2", "kafka-3"]
    ids = set()
    for name in nodes:
        node = services[name]
        env = node["environment"]
        assert node["image"] == "apache/kafka:4.1.2"
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        for key in ("OFFSETS_TOPIC_REPLICATION_FACTOR", "TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
            assert env[f"KAFKA_{key}"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert "healthcheck" in node
        ids.add(env["KAFKA_NODE_ID"])
    assert ids == {"1", "2", "3"}


def test_routers_consumers_and_the_reference_lps(compose: dict[str, Any]) -> None:
    services = compose["services"]
    bootstrap = "kafka-1:9092,kafka-2:9092,kafka-3:9092"
    for i in (1, 2):
        router = services[f"router-{i}"]
        assert router["command"] == ["broker", "run", "--instance", f"router-{i}"]
        env = router["environment"]
        assert env["PRIK_KAFKA__BOOTSTRAP"] == bootstrap
        assert env["PRIK_METRICS_HOST"] == "0.0.0.0"  # noqa: S104 - reachable by Prometheus, in its container
        assert "http://127.0.0.1:9464/health" in " ".join(router["healthcheck"]["test"])
        assert env["PRIK_ROUTE_KEY_FILE"].startswith("/var/lib/prik/secrets/")
        assert router["depends_on"]["provision"]["condition"] == "service_completed_successfully"
    assert not [
        name for name in services if name.startswith("router-") and name not in ("router-1", "router-2")
    ]
    for lps in lps_ids():
        consumer = services[f"consumer-{lps}"]
        command = consumer["command"]
        assert command[:4] == ["consumer", "run", "--lps", lps]
        assert command[command.index("--webhook") + 1] == "http://127.0.0.1:8091/webhook"
        assert command[command.index("--http-port") + 1] == "8090"
        assert "http://127.0.0.1:8090/health" in " ".join(consumer["healthcheck"]["test"])
        assert consumer["environment"]["PRIK_KAFKA__BOOTSTRAP"] == bootstrap
        receiver = services[f"ref-{lps}"]
        # Loopback of the consumer's own network: the only place a plain-http webhook is allowed.
        assert receiver["network_mode"] == f"service:consumer-{lps}"
        assert receiver["entrypoint"] == ["python", "-m", "consumers.reference_server"]
        secret_file = command[command.index("--secret-file") + 1]
        assert receiver["command"][receiver["command"].index("--secret-file") + 1] == secret_file


def test_provisioning_runs_once_after_the_cluster(compose: dict[str, Any]) -> None:
    provision = compose["services"]["provision"]
    script = provision["command"][0]
    assert "prik topics apply" in script
    assert "prik directory load /etc/prik/clinics.csv" in script
    assert {name: dep["condition"] for name, dep in provision["depends_on"].items()} == {
        f"kafka-{i}": "service_healthy" for i in (1, 2, 3)
    }
    assert provision["restart"] == "no"


def test_prometheus_scrapes_exactly_the_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus = services["prometheus"]
    assert any(v.endswith(":/etc/prometheus/prometheus.yml:ro") for v in map(str, _volumes(prometheus)))
    scrape = yaml.safe_load(SCRAPE.read_text(encoding="utf-8"))
    targets = {t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    expected = {f"router-{i}:9464" for i in (1, 2)} | {f"consumer-{lps}:8090" for lps in lps_ids()}
    assert targets == expected
    grafana = services["grafana"]
    mounts = " ".join(map(str, _volumes(grafana)))
    assert "/etc/grafana/provisioning" in mounts
    assert "/var/lib/grafana/dashboards/prik/prik-dashboard.json" in mounts


def _volumes(service: dict[str, Any]) -> list[str]:
    # docker-compose 1.x prints short "src:dst:mode" strings; newer ones print mappings.
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            out.append(f"{volume.get('source')}:{volume['target']}{':ro' if volume.get('read_only') else ''}")
        else:
            out.append(str(volume))
    return out


def test_the_dockerfile_installs_prik_as_a_user_with_prik_as_entrypoint() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert text.splitlines()[2] == "FROM python:3.11-slim"
    assert "RUN pip install ." in text
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["prik"]' in text
    # Every package of the wheel is copied in (pyproject's hatch list).
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"][
        "wheel"
    ]
    for package in packages["packages"]:
        assert f"COPY {package} ./{package}" in text


def test_the_reference_server_verifies_prints_each_message_once_and_stops_on_sigterm(tmp_path: Path) -> None:
    # The compose file's webhook receiver, as its container runs it.
    secret = generate_secret()
    secrets_file = tmp_path / "lps.secrets"
    secrets_file.write_text(f"# rotated in May\n{secret}\n", encoding="utf-8")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [
        sys.executable,
        "-m",
        "consumers.reference_server",
        "--port",
        str(port),
        "--secret-file",
        str(secrets_file),
    ]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert server.stdout is not None
        assert (
            server.stdout.readline().strip() == f"reference LPS listening on http://127.0.0.1:{port}/webhook"
        )
        body = b'{"id": "m-1", "type": "dk.prik.advisory.video-queue.v1", "recipient": "123456789012345"}'
        url = f"http://127.0.0.1:{port}/webhook"

        def post(headers: dict[str, str]) -> int:
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - a fixed http URL of the test's own server
                    return int(answer.status)
            except urllib.error.HTTPError as refused:
                return refused.code

        signed = WebhookSecrets([secret]).sign("wh-1", body)
        assert post(signed) == 200
        assert post(signed) == 200  # a duplicate: acknowledged again, shown once
        assert post({**signed, "webhook-signature": "v1,AAAA"}) == 401
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=20)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, err
    assert out.splitlines() == ["accepted m-1 dk.prik.advisory.video-queue.v1 for clinic 123456789012345"]


def test_the_reference_server_refuses_a_file_without_a_secret_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.secrets"
    empty.write_text("# none yet\n", encoding="utf-8")
    argv = [sys.executable, "-m", "consumers.reference_server", "--secret-file", str(empty)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert done.returncode == 2
    assert (
        done.stderr
        == f"reference LPS: error: --secret-file {empty} holds no secret (one whsec_... per line)\n"
    )
