"""The session service's Prometheus metrics (besides the per-RPC ones of common/metrics.py).

Built once per pod by server.py into its registry; components that are built without one (unit
tests) get a private registry, so counting is never optional in the code paths.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from common.metrics import LATENCY_BUCKETS

ANSWER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class SessionMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        self.active_sessions = Gauge(
            "dc_active_sessions", "Sessions this pod holds in memory (and the lease of)", registry=r
        )
        self.activations = Counter(
            "dc_session_activations", "Sessions activated on this pod", registry=r
        )
        self.takeovers = Counter(
            "dc_session_takeovers",
            "Activations that had to wait out the lease of a pod that is no longer live",
            registry=r,
        )
        self.evictions = Counter(
            "dc_session_evictions",
            "Sessions that left this pod's memory (idle, moved, lease lost, shutdown)",
            registry=r,
        )
        self.lease_renew_seconds = Histogram(
            "dc_lease_renew_seconds",
            "One renewal round of every lease this pod holds (one round trip per Redis node)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.subscribers = Gauge(
            "dc_subscribers", "Subscribe streams this pod serves (gateways and clients)", registry=r
        )
        self.fanout_queue_depth = Gauge(
            "dc_fanout_queue_depth",
            "Events waiting in the fullest subscriber queue on this pod",
            registry=r,
        )
        self.dropped_subscribers = Counter(
            "dc_dropped_subscribers",
            "Subscribers cut off for falling SUBSCRIBER_QUEUE events behind",
            registry=r,
        )
        self.answers = Counter(
            "dc_answers", "AI answers ended on this pod, by status", ["status"], registry=r
        )
        self.answer_first_batch_seconds = Histogram(
            "dc_answer_first_batch_seconds",
            "Time from the model call to the answer's first stored batch (time to first token)",
            buckets=ANSWER_BUCKETS,
            registry=r,
        )
        self.answer_max_gap_seconds = Histogram(
            "dc_answer_max_gap_seconds",
            "Longest wait between two batches of an answer (the inter-token gap clients saw)",
            buckets=ANSWER_BUCKETS,
            registry=r,
        )
        self.completion_tokens = Counter(
            "dc_answer_completion_tokens", "Tokens the model reported generating", registry=r
        )
        self.regenerated_tokens = Counter(
            "dc_answer_regenerated_tokens",
            "Tokens generated twice because an answer was continued after a loss",
            registry=r,
        )
        self.answer_resumes = Counter(
            "dc_answer_resumes", "Model calls that continued a partly stored answer", registry=r
        )
        self.answer_restarts = Counter(
            "dc_answer_restarts",
            "Partly stored answers replaced because the model answered afresh"
            " (ANSWER_CONTINUE=restart); their text is kept as an interrupted version",
            registry=r,
        )

    def watch(
        self,
        active: Callable[[], float],
        subscribers: Callable[[], float],
        deepest_queue: Callable[[], float],
    ) -> None:
        """Gauges read at scrape time."""
        self.active_sessions.set_function(active)
        self.subscribers.set_function(subscribers)
        self.fanout_queue_depth.set_function(deepest_queue)
