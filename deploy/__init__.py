"""Deployment: the local Apache Kafka runner and topic provisioning."""

from .borrowed import BorrowedKafka, acquire_kafka
from .local_kafka import KAFKA_VERSION, KafkaStatus, LocalKafka, LocalKafkaConfig, default_data_dir, free_port
from .readiness import probe_metadata, wait_until_ready

__all__ = [
    "KAFKA_VERSION",
    "BorrowedKafka",
    "KafkaStatus",
    "LocalKafka",
    "LocalKafkaConfig",
    "acquire_kafka",
    "default_data_dir",
    "free_port",
    "probe_metadata",
    "wait_until_ready",
]
