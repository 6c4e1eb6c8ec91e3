"""The one settings object, built at the entry point and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts import ConfigError, Topics

__all__ = ["KafkaSettings", "Settings", "load_settings"]


class KafkaSettings(BaseModel):
    bootstrap: str = "127.0.0.1:9092"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] | None = None
    username: str | None = None
    password: SecretStr | None = None

    def client_options(self) -> dict[str, object]:
        """Connection options shared by every aiokafka client prik creates."""
        options: dict[str, object] = {"bootstrap_servers": self.bootstrap}
        if self.sasl_mechanism is not None:
            options |= {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password.get_secret_value() if self.password else None,
            }
        return options


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
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Every topic name starts with this; tests give each run its own, so
    # parallel runs on one broker never see each other's data.
    topic_prefix: str = Field(default="prik", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,100}$")

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
