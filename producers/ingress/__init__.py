"""The HTTP ingress (`prik ingress run`): CloudEvents over HTTP onto a tenant's ingress topic."""

from .app import MESSAGES_PATH, Authenticator, Ingress, make_app
from .auth import BASIC_CHALLENGE, Credentials, basic_login
from .binding import Mode, UnsupportedMediaType, kafka_headers, mode_of
from .openapi import openapi_document
from .problems import PROBLEM_CONTENT_TYPE, problem
from .ratelimit import RateLimiter
from .sending import PublisherPool, Sender
from .server import IngressServer

__all__ = [
    "BASIC_CHALLENGE",
    "MESSAGES_PATH",
    "PROBLEM_CONTENT_TYPE",
    "Authenticator",
    "Credentials",
    "Ingress",
    "IngressServer",
    "Mode",
    "PublisherPool",
    "RateLimiter",
    "Sender",
    "UnsupportedMediaType",
    "basic_login",
    "kafka_headers",
    "make_app",
    "mode_of",
    "openapi_document",
    "problem",
]
