"""The router: validate, authenticate, authorise, dedupe, expire, route, track tasks, dead-letter."""

from .app import build_app
from .dedup import DEFAULT_DEDUP_WINDOW, DedupWindow
from .engine import EngineStats, TransactionalEngine
from .reader import CompactedReader
from .records import Incoming, Outgoing
from .router import Batch, Routed, Router
from .service import RouterService
from .tables import DirectoryTable, TaskRecord, TaskTable
from .tenancy import TenantsFile, admission_refusal
from .tokens import DEVELOPMENT_TOKENS, RouteTokens, tokens_from_settings

__all__ = [
    "DEFAULT_DEDUP_WINDOW",
    "DEVELOPMENT_TOKENS",
    "Batch",
    "CompactedReader",
    "DedupWindow",
    "DirectoryTable",
    "EngineStats",
    "Incoming",
    "Outgoing",
    "RouteTokens",
    "Routed",
    "Router",
    "RouterService",
    "TaskRecord",
    "TaskTable",
    "TenantsFile",
    "TransactionalEngine",
    "admission_refusal",
    "build_app",
    "tokens_from_settings",
]
