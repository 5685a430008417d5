"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process).

Labels carry only names of known variants (never a client's raw string), so label sets stay bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
NO_VARIANT = "-"  # label of requests rejected before a variant was resolved
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "tzip_requests", "POST /translate requests by variant and HTTP status", ["variant", "status"], registry=r
        )
        self.latency = Histogram(
            "tzip_request_latency_seconds", "total time of answered translations", ["variant"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.queue_latency = Histogram(
            "tzip_queue_latency_seconds", "time a request waited for its batch", ["variant"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.inference_latency = Histogram(
            "tzip_inference_latency_seconds", "time of one batched inference call", ["variant"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.batch_size = Histogram(
            "tzip_batch_size", "sentences per inference call", ["variant"], buckets=BATCH_BUCKETS, registry=r
        )
        self.sentences = Counter("tzip_sentences", "sentences translated", ["variant"], registry=r)
        self.shed = Counter(
            "tzip_shed", "requests answered 503 (queue full or timed out)", ["variant", "reason"], registry=r
        )
        self.cancelled = Counter(
            "tzip_cancelled", "requests whose client went away before the answer (not computed further)", ["variant"],
            registry=r,
        )
        self.queue_depth = Gauge("tzip_queue_depth", "sentences waiting for a batch", ["variant"], registry=r)
        self.loaded = Gauge("tzip_variant_loaded", "1 while the variant is loaded", ["variant"], registry=r)
        self.loaded_bytes = Gauge("tzip_loaded_bytes", "bytes on disk of all loaded variants", registry=r)
        self.resident = Gauge(
            "tzip_variant_resident_bytes", "resident memory the variant's load added to the process (0: not loaded)",
            ["variant"], registry=r,
        )
        self.disk = Gauge("tzip_variant_disk_bytes", "bytes of the variant's files on disk (its manifest's)", ["variant"],
                          registry=r)
        self.weight_bytes = Gauge(
            "tzip_variant_weight_bytes", "bytes of weights the loaded variant holds in memory (0: not loaded)",
            ["variant"], registry=r,
        )
        self.process_resident = Gauge("tzip_process_resident_bytes", "resident memory of the process", registry=r)
        self.budget = Gauge("tzip_memory_budget_bytes", "TZIP_MEMORY_BUDGET_MB in bytes", registry=r)
        self.reserve = Gauge(
            "tzip_inference_reserve_bytes", "largest resident growth seen during one inference call", registry=r
        )
        self.segments = Counter("tzip_segments", "sentence segments translated", ["variant"], registry=r)
        self.load_seconds = Gauge("tzip_variant_load_seconds", "time of the last load", ["variant"], registry=r)
        self.load_failures = Counter(
            "tzip_variant_load_failures", "loads refused (integrity, missing files)", ["variant"], registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
