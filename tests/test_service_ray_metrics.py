"""service/ray_metrics.py without a cluster: expositions of several replicas merge into one with the service's
metric names, counters and histograms summed, load times the largest, and the result parses again."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from service.metrics import Metrics
from service.ray_metrics import ClusterMetrics, merge
from tests.service_helpers import metric


def _replica(requests: int, batch: int, load_s: float) -> str:
    m = Metrics()
    m.requests.labels("tiny", "200").inc(requests)
    m.batch_size.labels("tiny").observe(batch)
    m.loaded.labels("tiny").set(1)
    m.load_seconds.labels("tiny").set(load_s)
    return m.exposition().decode()


def test_replicas_sum_and_load_times_take_the_largest():
    text = merge([_replica(3, 4, 0.5), _replica(5, 40, 2.0)]).decode()
    assert metric(text, "tzip_requests_total", variant="tiny", status="200") == 8
    assert metric(text, "tzip_batch_size_count", variant="tiny") == 2
    assert metric(text, "tzip_batch_size_sum", variant="tiny") == 44
    assert metric(text, "tzip_batch_size_bucket", variant="tiny", le="+Inf") == 2
    assert metric(text, "tzip_batch_size_bucket", variant="tiny", le="4.0") == 1
    assert metric(text, "tzip_variant_loaded", variant="tiny") == 2  # replicas holding it
    assert metric(text, "tzip_variant_load_seconds", variant="tiny") == 2.0
    def samples(t: str) -> set[str]:
        return {s.name for f in text_string_to_metric_families(t) for s in f.samples}

    assert samples(text) == samples(_replica(1, 1, 1))  # the same series names, and it parses again


def test_cluster_metrics_add_the_other_replicas_to_their_own():
    m = ClusterMetrics()
    m.requests.labels("tiny", "200").inc()
    m.others = lambda: [_replica(2, 1, 0.1)]
    assert metric(m.exposition().decode(), "tzip_requests_total", variant="tiny", status="200") == 3
