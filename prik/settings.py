"""The one settings object, built at the entry point and passed down."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts import ConfigError, Topics

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "KafkaSettings", "Settings", "load_settings"]

# DESIGN.md "Limits": a record value over this is refused before it is parsed.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024


class KafkaSettings(BaseModel):
    bootstrap: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None
    # A file keeps the password out of the environment of every child and out of `ps`.
    password_file: Path | None = None
    # The CA that signed the brokers' certificates (`prik kafka start --secure`: <data-dir>/tls/ca.pem).
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _sasl_has_a_login(self) -> KafkaSettings:
        if self.sasl and (not self.username or (self.password is None and self.password_file is None)):
            msg = "SASL_SSL needs PRIK_KAFKA__USERNAME and PRIK_KAFKA__PASSWORD or PRIK_KAFKA__PASSWORD_FILE"
            raise ValueError(msg)
        return self

    @property
    def sasl(self) -> bool:
        return self.security_protocol == "SASL_SSL"

    def secret(self) -> str | None:
        """The SASL password: `password`, else the first line of `password_file`."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            msg = f"PRIK_KAFKA__PASSWORD_FILE {self.password_file} cannot be read: {exc.strerror}"
            raise ConfigError(msg) from None

    def client_options(self) -> dict[str, object]:
        """Connection options shared by every aiokafka client prik creates."""
        options: dict[str, object] = {"bootstrap_servers": self.bootstrap}
        if self.sasl:
            options |= {
                "security_protocol": "SASL_SSL",
                "ssl_context": self.ssl_context(),
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.secret(),
            }
        return options

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the brokers against `ca_file` (else the system's CAs), host names included."""
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def confluent_config(self) -> dict[str, str]:
        """The same connection for confluent-kafka (librdkafka): its admin client has ACL and SCRAM calls."""
        config = {"bootstrap.servers": self.bootstrap, "security.protocol": self.security_protocol}
        if self.sasl:
            config |= {
                "sasl.mechanism": self.sasl_mechanism,
                "sasl.username": self.username or "",
                "sasl.password": self.secret() or "",
                "ssl.endpoint.identification.algorithm": "https",
            }
            # Without a CA file, "probe" finds the system's CAs where the wheel's own OpenSSL would not.
            config["ssl.ca.location"] = str(self.ca_file) if self.ca_file is not None else "probe"
        return config


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRIK_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    tenants: Path | None = None
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Where the router's /metrics and /health listen: loopback unless a scraper or probe
    # elsewhere must reach them (a container: 0.0.0.0).
    metrics_host: str = "127.0.0.1"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Every topic name starts with this; tests give each run its own, so
    # parallel runs on one broker never see each other's data.
    topic_prefix: str = Field(default="prik", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,100}$")
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, ge=1024, le=8 * 1024 * 1024)
    # Comma-separated `whsec_...` secrets; every webhook is signed with each (rotation).
    webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # The router's key for `prik-route` tokens; shared by every router instance.
    route_key: SecretStr | None = None
    route_key_file: Path | None = None
    # `prik ingress run`: each tenant's token bucket, refilled at `ingress_rate` requests a
    # second and holding up to `ingress_burst`; a request that finds it empty is answered 429.
    ingress_rate: float = Field(default=100.0, gt=0, le=1_000_000)
    ingress_burst: int = Field(default=200, ge=1, le=1_000_000)

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment; a bad value is a ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # overrides are validated by pydantic
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        msg = f"invalid setting PRIK_{where.upper().replace('.', '__')}: {first['msg']}"
        raise ConfigError(msg) from None
