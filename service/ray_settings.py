"""Settings of the Ray Serve deployment (``TZIP_RAY_*``), on top of the service's own ``TZIP_*`` settings.

Every process of the deployment (the driver, the ingress and translator replicas, on any node) reads the
same variables: the driver copies its ``TZIP_*`` environment into each deployment's ``runtime_env``, and a
``serve deploy`` config sets them there itself (deploy/serve.yaml).
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from .settings import ENV_PREFIX, Settings, SettingsError


class RaySettings(Settings):
    ray_address: str | None = Field(
        None, description="a running cluster to join (ray://... or auto); default: start a local one"
    )
    ray_num_cpus: int | None = Field(None, ge=1, description="CPUs of the local cluster (default: the machine's)")
    ray_replicas: int = Field(2, ge=1, le=256, description="translator replicas (the start value when autoscaling)")
    ray_min_replicas: int = Field(0, ge=0, le=256, description="autoscaling lower bound; with ray_max_replicas")
    ray_max_replicas: int = Field(0, ge=0, le=256, description="above ray_replicas: autoscale between min and max")
    ray_target_ongoing_requests: float = Field(
        64, gt=0, description="requests in flight per translator replica that autoscaling aims at (a batch's worth)"
    )
    ray_max_ongoing_requests: int = Field(
        1024, ge=1, description="requests one replica accepts at once (Ray's default of 5 would starve the batcher)"
    )
    ray_models_per_replica: int = Field(
        4, ge=1, le=1024, description="variants one translator replica keeps loaded (@serve.multiplexed LRU)"
    )
    ray_replica_cpus: float = Field(1, gt=0, description="CPUs reserved per translator replica")
    ray_replica_gpus: float = Field(0, ge=0, description="GPUs per translator replica: 0.5 puts two on one GPU")
    ray_ingress_replicas: int = Field(1, ge=1, le=256, description="HTTP ingress replicas (parsing, limits, errors)")
    ray_ingress_cpus: float = Field(0.5, ge=0, description="CPUs reserved per ingress replica")
    ray_mode: Literal["split", "combined"] = Field(
        "split", description="split: ingress replicas parse HTTP and send each translation to multiplexed translator "
        "replicas; combined: every replica is the whole single-process service (routes, registry, batcher), so a "
        "request crosses no second process (no @serve.multiplexed: each replica loads what it is asked for, "
        "within its memory budget)"
    )

    @model_validator(mode="after")
    def _bounds(self) -> RaySettings:
        if self.ray_max_replicas and not self.ray_min_replicas <= self.ray_replicas <= self.ray_max_replicas:
            raise ValueError(
                f"TZIP_RAY_REPLICAS={self.ray_replicas} must lie between TZIP_RAY_MIN_REPLICAS={self.ray_min_replicas} "
                f"and TZIP_RAY_MAX_REPLICAS={self.ray_max_replicas} when autoscaling"
            )
        return self

    @property
    def replica_ort_threads(self) -> int:
        """ONNX Runtime threads of one translator replica: its CPU share, unless TZIP_ORT_THREADS says."""
        return self.ort_threads or max(1, int(self.ray_replica_cpus))

    @property
    def local_cpus(self) -> int:
        """Logical CPUs of a local cluster: TZIP_RAY_NUM_CPUS, else enough for every replica and at least the
        machine's cores (Ray's CPUs are bookkeeping: two 1-CPU replicas and an ingress do run on 2 cores)."""
        if self.ray_num_cpus:
            return self.ray_num_cpus
        wanted = max(self.ray_replicas, self.ray_max_replicas) * self.ray_replica_cpus
        wanted += self.ray_ingress_replicas * self.ray_ingress_cpus
        return max(os.cpu_count() or 1, math.ceil(wanted))

    def translator_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "max_ongoing_requests": self.ray_max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.ray_replica_cpus, "num_gpus": self.ray_replica_gpus,
                                  "runtime_env": {"env_vars": tzip_environment()}},
        }
        if self.ray_max_replicas:
            opts["autoscaling_config"] = {
                "min_replicas": self.ray_min_replicas, "initial_replicas": self.ray_replicas,
                "max_replicas": self.ray_max_replicas, "target_ongoing_requests": self.ray_target_ongoing_requests,
            }
        else:
            opts["num_replicas"] = self.ray_replicas
        return opts

    def ingress_options(self) -> dict[str, Any]:
        return {
            "num_replicas": self.ray_ingress_replicas,
            "max_ongoing_requests": self.ray_max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.ray_ingress_cpus, "runtime_env": {"env_vars": tzip_environment()}},
        }


def tzip_environment() -> dict[str, str]:
    """The TZIP_* variables of this process, for the replicas' runtime_env (they may run on other nodes)."""
    return {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}


def load_ray_settings(**overrides: Any) -> RaySettings:
    try:
        return RaySettings(**overrides)
    except ValidationError as e:
        lines = [f"  {ENV_PREFIX}{'.'.join(map(str, err['loc'])).upper() or 'settings'}: {err['msg']}" for err in e.errors()]
        raise SettingsError("invalid Ray Serve settings:\n" + "\n".join(lines)) from None
