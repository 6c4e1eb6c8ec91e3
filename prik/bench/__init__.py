"""`prik bench`: prik's costs as ratios against baselines measured in the same run."""

from .codec import CodecResult, bench_codec
from .pipeline import PipelineOptions, bench_pipeline
from .routing import RoutingResult, bench_routing

__all__ = [
    "CodecResult",
    "PipelineOptions",
    "RoutingResult",
    "bench_codec",
    "bench_pipeline",
    "bench_routing",
]
