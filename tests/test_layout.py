"""The layout's rules, checked: the runtime package and the service never need torch, modules stay short."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "compression" / "runtime"
TORCH_MODULES = ("torch", "safetensors.torch", "transformers")
# offline packages: they may import torch, so the runtime must never import them
OFFLINE = ("compression.train", "compression.compress", "compression.export", "compression.analysis",
           "compression.interop", "compression.commands")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (inside functions too), as absolute names."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                package = ".".join(path.relative_to(ROOT).with_suffix("").parts[: -node.level])
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


@pytest.mark.parametrize("path", sorted(RUNTIME.rglob("*.py")), ids=lambda p: p.name)
def test_nothing_in_the_runtime_package_imports_torch_or_offline_code(path):
    bad = sorted(m for m in imported_modules(path)
                 if m.split(".")[0] in TORCH_MODULES or m.startswith(TORCH_MODULES) or m.startswith(OFFLINE))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: the runtime package must stay torch-free"


@pytest.mark.parametrize("path", sorted((ROOT / "service").rglob("*.py")), ids=lambda p: p.name)
def test_the_service_imports_only_the_runtime_package(path):
    bad = sorted(m for m in imported_modules(path) if m.startswith("compression") and
                 not (m == "compression" or m.startswith("compression.runtime")))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: the service may import compression.runtime only"


def test_importing_the_runtime_and_the_service_loads_no_torch():
    code = ("import sys, compression.runtime, service.main\n"
            "import compression.runtime.translator, compression.runtime.attention, compression.runtime.graphs\n"
            "import compression.runtime.catalogue, compression.runtime.heatmap\n"
            "from service.main import create_app\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in [*(ROOT / "compression").rglob("*.py"), *(ROOT / "service").rglob("*.py")]
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these modules: {long}"


def test_model_config_accepts_exactly_the_activations_the_model_implements():
    from compression.runtime.model_config import ACTIVATION_NAMES
    from compression.train.model import ACTIVATIONS

    assert set(ACTIVATION_NAMES) == set(ACTIVATIONS)
