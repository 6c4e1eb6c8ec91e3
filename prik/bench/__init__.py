"""`prik bench`: prik's costs as ratios against baselines measured in the same run."""

from .codec import CodecResult, bench_codec
from .fencing import FencingResult, bench_fencing
from .ingress import IngressBenchOptions, bench_ingress
from .pipeline import PipelineOptions, bench_pipeline
from .routing import RoutingResult, bench_routing
from .scaling import ScalingResult, bench_scaling

__all__ = [
    "CodecResult",
    "FencingResult",
    "IngressBenchOptions",
    "PipelineOptions",
    "RoutingResult",
    "ScalingResult",
    "bench_codec",
    "bench_fencing",
    "bench_ingress",
    "bench_pipeline",
    "bench_routing",
    "bench_scaling",
]
