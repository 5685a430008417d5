"""The Ray Serve configs, checked without a cluster: deploy/serve.yaml (serve run / serve deploy) and the KubeRay
RayService of deploy/rayservice.yaml parse, point at the app builder, set only TZIP_* settings that exist and
validate, and the RayService asks for GPU nodes whose replicas share them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from service.ray_settings import RaySettings

ROOT = Path(__file__).resolve().parents[1]
SERVE = ROOT / "deploy/serve.yaml"
RAYSERVICE = ROOT / "deploy/rayservice.yaml"


def _settings(env: dict[str, str]) -> RaySettings:
    fields = {k.removeprefix("TZIP_").lower(): v for k, v in env.items()}
    unknown = sorted(f for f in fields if f not in RaySettings.model_fields)
    assert not unknown, f"not TZIP_* settings: {unknown}"
    return RaySettings(**fields)  # raises on a bad value


def _check_serve_config(cfg: dict) -> RaySettings:
    (application,) = cfg["applications"]
    module, _, attr = application["import_path"].partition(":")
    assert module == "service.ray_serve" and attr == "app"
    tree = ast.parse((ROOT / "service/ray_serve.py").read_text())
    assert attr in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, "the app builder is gone"
    assert application["route_prefix"] == "/"
    return _settings(application["runtime_env"]["env_vars"])


def test_the_serve_config_builds_the_app_on_port_8000():
    cfg = yaml.safe_load(SERVE.read_text())
    assert cfg["http_options"]["port"] == 8000
    s = _check_serve_config(cfg)
    assert s.ray_replicas == 2


@pytest.fixture(scope="module")
def rayservice() -> dict:
    return yaml.safe_load(RAYSERVICE.read_text())


def test_the_rayservice_serves_the_same_app_on_cuda_with_replicas_sharing_a_gpu(rayservice):
    assert rayservice["apiVersion"] == "ray.io/v1" and rayservice["kind"] == "RayService"
    s = _check_serve_config(yaml.safe_load(rayservice["spec"]["serveConfigV2"]))
    assert s.device == "cuda" and 0 < s.ray_replica_gpus < 1
    assert s.ray_min_replicas <= s.ray_replicas <= s.ray_max_replicas
    assert str(s.model_root) == "/models/onnx"


def test_the_rayservice_cluster_has_gpu_workers_and_mounts_the_exports(rayservice):
    cluster = rayservice["spec"]["rayClusterConfig"]
    version = cluster["rayVersion"]
    pins = re.findall(r'"ray\[serve\]>=([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    assert pins and tuple(map(int, version.split("."))) >= tuple(map(int, pins[0].split(".")))
    assert f"rayproject/ray:{version}-" in (ROOT / "deploy/Dockerfile.ray").read_text()
    (gpu,) = cluster["workerGroupSpecs"]
    (worker,) = gpu["template"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"containerPort": 8000, "name": "serve"} in head["ports"]
    for spec in (cluster["headGroupSpec"]["template"]["spec"], gpu["template"]["spec"]):
        mounts = {m["mountPath"] for c in spec["containers"] for m in c["volumeMounts"]}
        assert "/models/onnx" in mounts
