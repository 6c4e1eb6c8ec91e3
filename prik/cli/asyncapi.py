"""`prik asyncapi export FILE`: the AsyncAPI 3.0.0 document of every channel and message."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from contracts import ConfigError, codec
from prik.asyncapi import build_asyncapi
from prik.settings import load_settings

from .app import app, fail

__all__ = ["export_asyncapi"]

asyncapi_app = typer.Typer(
    help="The AsyncAPI 3.0 document of prik's topics and webhook.", no_args_is_help=True
)
app.add_typer(asyncapi_app, name="asyncapi")

_JSON = frozenset({".json"})
_YAML = frozenset({".yaml", ".yml"})


@asyncapi_app.command("export")
def export_asyncapi(
    file: Annotated[
        Path, typer.Argument(help="Where to write: FILE.json, or FILE.yaml / FILE.yml.", show_default=False)
    ],
) -> None:
    """Write the AsyncAPI 3.0.0 document, generated from prik's contracts and topic provisioning.

    Every topic family (its address, key, partitions, retention and compaction as
    `prik topics apply` makes them, topic names under $PRIK_TOPIC_PREFIX), every
    message type with its JSON Schema, the Kafka servers (SASL/SCRAM and PLAINTEXT)
    and the signed webhook POST to an LPS. Example:

        prik asyncapi export prik.asyncapi.yaml
    """
    suffix = file.suffix.lower()
    if suffix not in _JSON | _YAML:
        msg = f"{file}: the file name must end in .json, .yaml or .yml"
        raise ConfigError(msg)
    document = build_asyncapi(prefix=load_settings().topics.prefix)
    if suffix in _JSON:
        body = codec.dumps(document, indent=True) + b"\n"
    else:
        body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100).encode("utf-8")
    try:
        file.write_bytes(body)
    except OSError as exc:
        fail(f"{file}: cannot write: {exc.strerror or type(exc).__name__}")
    channels, messages = len(document["channels"]), len(document["components"]["messages"])
    typer.echo(f"wrote {file}: AsyncAPI {document['asyncapi']}, {channels} channels, {messages} messages")
