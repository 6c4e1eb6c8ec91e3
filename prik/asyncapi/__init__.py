"""`prik asyncapi export`: an AsyncAPI 3.0.0 document generated from the contracts and topic provisioning."""

from .document import ASYNCAPI_VERSION, HTTP_BINDING_VERSION, WEBHOOK_CHANNEL, build_asyncapi
from .families import FAMILIES, KAFKA_BINDING_VERSION, Family, family_specs, kafka_channel_binding

__all__ = [
    "ASYNCAPI_VERSION",
    "FAMILIES",
    "HTTP_BINDING_VERSION",
    "KAFKA_BINDING_VERSION",
    "WEBHOOK_CHANNEL",
    "Family",
    "build_asyncapi",
    "family_specs",
    "kafka_channel_binding",
]
