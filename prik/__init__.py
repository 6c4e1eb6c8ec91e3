"""prik: the settings, logging and command line that tie the packages together."""

from .settings import KafkaSettings, Settings, load_settings

__all__ = ["KafkaSettings", "Settings", "load_settings"]
