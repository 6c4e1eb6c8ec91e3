"""`prik dashboard`: one live web page for operators, its numbers read from Kafka itself."""

from .collector import Collector, PeakFinder
from .model import DashboardState, Peak
from .server import Dashboard

__all__ = ["Collector", "Dashboard", "DashboardState", "Peak", "PeakFinder"]
