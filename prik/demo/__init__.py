"""`prik demo`: the whole path, locally, in one process, with live progress and a final account."""

from .cast import LPS_VENDORS, MUNICIPALITIES, VIDEO_PLATFORM, Cast, demo_cast
from .runner import DemoOptions, DemoResult, logs_to, new_run_dir, run_demo
from .tally import Tally

__all__ = [
    "LPS_VENDORS",
    "MUNICIPALITIES",
    "VIDEO_PLATFORM",
    "Cast",
    "DemoOptions",
    "DemoResult",
    "Tally",
    "demo_cast",
    "logs_to",
    "new_run_dir",
    "run_demo",
]
