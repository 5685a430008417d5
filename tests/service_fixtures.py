"""Fixtures of the service tests (a pytest plugin: modules list it in ``pytest_plugins``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.service_helpers import build_root


@pytest.fixture(scope="session")
def variants_root(tmp_path_factory) -> Path:
    """Exported tiny variants shared by the session (read-only: copy it before tampering)."""
    return build_root(tmp_path_factory.mktemp("served"))


@pytest.fixture
def writable_root(variants_root, tmp_path) -> Path:
    return Path(shutil.copytree(variants_root, tmp_path / "root"))
