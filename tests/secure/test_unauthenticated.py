"""No listening port of the secure broker gives anything to a client that has not logged in.

Pitfall #18: in KRaft the controller port speaks the admin protocol too, so it
is tried as hard as the client port.
"""

from __future__ import annotations

import ssl
import time

import pytest
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed, UnsupportedSaslMechanismError
from aiokafka.protocol.admin import DescribeAclsRequest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from contracts import NotAuthorisedError
from deploy import probe_metadata
from deploy.local_kafka import SUPER_USER
from prik.kafka import admin_client, confluent_admin, confluent_errors, kafka_connection, login_works

from .conftest import SecureWorld

pytestmark = [pytest.mark.kafka, pytest.mark.secure]


async def connect(host: str, port: int, options: dict[str, object], then: object = None) -> None:
    """One connection with its login (and the request `then`, if any), closed again whatever happens."""
    async with kafka_connection(host, port, options, within=5) as conn:
        if then is not None:
            await conn.send(then)


def ports(world: SecureWorld) -> dict[str, int]:
    client_port = int(world.kafka.bootstrap.rpartition(":")[2])
    return {"client": client_port, "controller": world.kafka.controller_port}


@pytest.mark.parametrize("listener", ["client", "controller"])
async def test_plaintext_client_gets_nothing(secure_world: SecureWorld, listener: str) -> None:
    port = ports(secure_world)[listener]
    assert not await probe_metadata(f"127.0.0.1:{port}", within=3)


@pytest.mark.parametrize("listener", ["client", "controller"])
async def test_tls_without_a_login_gets_nothing(secure_world: SecureWorld, listener: str) -> None:
    port = ports(secure_world)[listener]
    context = ssl.create_default_context(cafile=str(secure_world.kafka.ca_file))
    options: dict[str, object] = {"security_protocol": "SSL", "ssl_context": context}
    # The TLS handshake succeeds (and ApiVersions is answered); an admin request (both listeners speak
    # DescribeAcls) is not: the broker closes the connection.
    any_acl = DescribeAclsRequest(2, "prik", 3, None, None, 1, 1)
    with pytest.raises(KafkaConnectionError):
        await connect("127.0.0.1", port, options, then=any_acl)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
async def test_the_controller_port_refuses_even_the_super_user(
    secure_world: SecureWorld, mechanism: str
) -> None:
    """Only the brokers' own account may use the controller listener: not admin, by either mechanism."""
    options = secure_world.admin().client_options()
    options.pop("bootstrap_servers")
    options["sasl_mechanism"] = mechanism
    with pytest.raises((SaslAuthenticationFailed, UnsupportedSaslMechanismError)):
        await connect("127.0.0.1", secure_world.kafka.controller_port, options)


async def test_wrong_password_and_unknown_user_are_refused(secure_world: SecureWorld) -> None:
    video = secure_world.principal("video")
    wrong = video.model_copy(update={"password": SecretStr("not-the-password"), "password_file": None})
    unknown = video.model_copy(update={"username": "nobody-at-all"})
    assert await login_works(video)
    assert not await login_works(wrong)
    assert not await login_works(unknown)
    # Through prik's client factory, one line that says what happened.
    with pytest.raises(NotAuthorisedError, match="refused the login of user nobody-at-all"):
        async with admin_client(unknown):
            pass


async def test_plain_mechanism_is_refused_on_the_client_port(secure_world: SecureWorld) -> None:
    """PLAIN would send the password itself; the client listener speaks SCRAM only."""
    options = secure_world.admin().client_options()
    options.pop("bootstrap_servers")
    options["sasl_mechanism"] = "PLAIN"
    with pytest.raises(UnsupportedSaslMechanismError):
        await connect("127.0.0.1", ports(secure_world)["client"], options)


@pytest.mark.parametrize("listener", ["client", "controller"])
def test_librdkafka_without_a_login_gets_nothing(secure_world: SecureWorld, listener: str) -> None:
    port = ports(secure_world)[listener]
    for protocol in ("PLAINTEXT", "SSL"):
        client = AdminClient(
            {
                "bootstrap.servers": f"127.0.0.1:{port}",
                "security.protocol": protocol,
                "ssl.ca.location": str(secure_world.kafka.ca_file),
                "log_level": 0,
            }
        )
        started = time.monotonic()
        # Whatever librdkafka makes of the closed connection, no metadata comes back.
        with pytest.raises(KafkaException):
            client.list_topics(timeout=2)
        assert time.monotonic() - started < 10


def test_librdkafka_with_the_admin_login_works(secure_world: SecureWorld) -> None:
    """The same settings object drives librdkafka: prik's confluent admin client as admin."""
    with confluent_errors("listing topics"):
        metadata = confluent_admin(secure_world.admin()).list_topics(timeout=10)
    assert secure_world.topics.dlq in metadata.topics
    assert secure_world.admin().username == SUPER_USER
