"""`prik bench`: prik's costs as ratios against baselines measured in the same run."""

from .codec import CodecResult, bench_codec
from .routing import RoutingResult, bench_routing

__all__ = ["CodecResult", "RoutingResult", "bench_codec", "bench_routing"]
