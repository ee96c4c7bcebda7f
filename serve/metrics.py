"""The server's Prometheus metrics (GET /metrics), in a registry of its own.

Names follow Prometheus' conventions (a unit suffix, `_total` on counters) and
the `gpt2onnx_` prefix. The scheduler thread and the front end both update
them; prometheus-client's metrics are thread-safe.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Time to first token spans a prefill queued behind other requests; inter-token
# latency is one engine step (a few ms on the shipped model, ~20 ms for gpt2 fp32).
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


class Metrics:
    """Every metric the server reports."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("gpt2onnx_requests", "HTTP requests by endpoint and status code", ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("gpt2onnx_prompt_tokens", "Prompt tokens received", registry=r)
        self.generation_tokens = Counter("gpt2onnx_generation_tokens", "Tokens generated", registry=r)
        self.queue_depth = Gauge("gpt2onnx_queue_depth", "Requests waiting for a slot", registry=r)
        self.busy_slots = Gauge("gpt2onnx_busy_slots", "Slots running a request", registry=r)
        self.slots = Gauge("gpt2onnx_slots", "Slots of the engine", registry=r)
        self.running = Gauge("gpt2onnx_requests_running", "Requests accepted and not finished (queued or in a slot)", registry=r)
        self.steps = Counter("gpt2onnx_engine_steps", "Engine steps (one token for every busy slot)", registry=r)
        self.cancel_steps = Histogram("gpt2onnx_cancel_steps", "Engine steps from the scheduler seeing a cancel to the slot being free", buckets=(0, 1, 2, 3, 5, 10), registry=r)
        self.ttft = Histogram("gpt2onnx_time_to_first_token_seconds", "From a request's arrival to its first token", buckets=TTFT_BUCKETS, registry=r)
        self.itl = Histogram("gpt2onnx_inter_token_latency_seconds", "Between two tokens of one sequence", buckets=ITL_BUCKETS, registry=r)
