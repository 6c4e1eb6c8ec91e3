"""`prik deploy render`: Strimzi `KafkaTopic` and `KafkaUser` manifests from a tenants file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploy.render import render_manifests, write_manifests
from prik.settings import load_settings
from prik.tenants import load_tenants

from .app import app

__all__ = ["deploy_app"]

deploy_app = typer.Typer(help="Production deployment files (deploy/k8s/, Strimzi).", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("render")
def render(
    tenants: Annotated[Path, typer.Option("--tenants", help="Tenants TOML file.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Folder for the YAML files (made when missing).")],
    cluster: Annotated[
        str, typer.Option("--cluster", help="The Strimzi Kafka cluster's name (label strimzi.io/cluster).")
    ] = "prik",
) -> None:
    """Write one KafkaTopic per topic and one KafkaUser per tenant and for the router.

    Topics get the partitions and configs of `prik topics apply` with replication 3
    (min ISR 2); users get SCRAM-SHA-512 and exactly the ACLs of DESIGN.md. Topic
    names start with $PRIK_TOPIC_PREFIX. A manifest of an earlier render whose
    tenant is gone is removed from the folder. Example:

        prik deploy render --tenants deploy/tenants.example.toml --out deploy/k8s/rendered
        kubectl apply -n kafka -f deploy/k8s/rendered
    """
    settings = load_settings()
    manifests = render_manifests(settings.topics, load_tenants(tenants), cluster)
    written = write_manifests(manifests, out)
    topics = sum(1 for m in manifests if m["kind"] == "KafkaTopic")
    typer.echo(
        f"wrote {len(written)} manifests to {out}: {topics} KafkaTopic, {len(written) - topics} KafkaUser"
    )
