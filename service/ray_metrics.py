"""/metrics of a Ray Serve deployment: the service's own metric names, summed over every replica.

Each replica keeps the ordinary ``Metrics`` (ingress replicas count requests and latency, translator
replicas batches, queues and loads) and reports its exposition to the board deployment every second; the
ingress that answers /metrics merges the others' latest reports with its own current one. Samples with
the same name and labels are summed (counters, histograms, queue depths; ``tzip_variant_loaded`` becomes
the number of replicas holding the variant), except load times (the largest) and ``*_created`` stamps
(the earliest), so a dashboard made for one process reads the whole deployment unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from prometheus_client.parser import text_string_to_metric_families

from .metrics import Metrics

LARGEST = ("tzip_variant_load_seconds",)


def merge(expositions: Iterable[str]) -> bytes:
    """One Prometheus text exposition from several with the same metric families."""
    families: dict[str, tuple[str, str]] = {}  # name -> (type, help), first seen wins
    samples: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in expositions:
        for fam in text_string_to_metric_families(text):
            families.setdefault(fam.name, (fam.type, fam.documentation))
            into = samples.setdefault(fam.name, {})
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                if key not in into:
                    into[key] = s.value
                elif s.name.endswith("_created"):
                    into[key] = min(into[key], s.value)
                elif s.name in LARGEST:
                    into[key] = max(into[key], s.value)
                else:
                    into[key] += s.value
    lines: list[str] = []
    for name, (kind, doc) in families.items():
        lines += [f"# HELP {name} {_escape(doc)}", f"# TYPE {name} {kind}"]
        for (sample, labels), value in samples[name].items():
            lab = ",".join(f'{k}="{_escape(v, quote=True)}"' for k, v in labels)
            lines.append(f"{sample}{{{lab}}} {_number(value)}" if lab else f"{sample} {_number(value)}")
    return ("\n".join(lines) + "\n").encode()


def _escape(text: str, quote: bool = False) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if quote else text


def _number(x: float) -> str:
    if not math.isfinite(x) or x != int(x) or abs(x) >= 1e15:
        return repr(float(x)).replace("inf", "Inf").replace("nan", "NaN")
    return f"{int(x)}.0"


class ClusterMetrics(Metrics):
    """The ingress replica's metrics; ``exposition()`` adds the other replicas' latest reports."""

    def __init__(self) -> None:
        super().__init__()
        self.others: Callable[[], list[str]] = list

    def own(self) -> str:
        return super().exposition().decode()

    def exposition(self) -> bytes:
        return merge([self.own(), *self.others()])
