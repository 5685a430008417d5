"""Settings from TZIP_* variables, validated at start-up with messages that name the fix; no torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.main import create_app
from service.registry import StartupError
from service.settings import Settings, SettingsError, load_settings
from tests.service_helpers import make_app, running

pytest_plugins = ["tests.service_fixtures"]  # variants_root, writable_root

ROOT = Path(__file__).resolve().parent.parent


def test_environment_variables_are_read_and_lists_are_comma_separated(monkeypatch):
    monkeypatch.setenv("TZIP_PORT", "9001")
    monkeypatch.setenv("TZIP_PRELOAD", "a, b,,c")
    monkeypatch.setenv("TZIP_MAX_BATCH_SIZE", "16")
    s = Settings()
    assert (s.port, s.preload, s.max_batch_size) == (9001, ["a", "b", "c"], 16)
    monkeypatch.setenv("TZIP_PRELOAD", "all")
    assert Settings().preload_all


def test_defaults_need_no_configuration(monkeypatch):
    for k in list(os.environ):
        if k.startswith("TZIP_"):
            monkeypatch.delenv(k)
    s = load_settings()
    assert s.model_root == Path("build/onnx") and s.device == "auto" and s.default_variant is None
    monkeypatch.setenv("TZIP_ONNX_ROOT", "/exports")  # the export's own variable is honoured
    assert load_settings().model_root == Path("/exports")
    monkeypatch.setenv("TZIP_MODEL_ROOT", "/mine")
    assert load_settings().model_root == Path("/mine")


@pytest.mark.parametrize(
    "env,words",
    [
        ({"TZIP_MAX_BATCH_SIZE": "0"}, "TZIP_MAX_BATCH_SIZE"),
        ({"TZIP_PORT": "http"}, "TZIP_PORT"),
        ({"TZIP_DEVICE": "tpu"}, "TZIP_DEVICE"),
        ({"TZIP_MAX_QUEUE": "2", "TZIP_MAX_TEXTS": "8"}, "raise TZIP_MAX_QUEUE"),
    ],
)
def test_invalid_values_fail_with_the_variable_named(monkeypatch, env, words):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError, match=words):
        load_settings()


def test_start_up_refuses_missing_exports_and_unknown_variants(tmp_path, variants_root):
    with pytest.raises(StartupError, match="make export"):
        with running(create_app(load_settings(model_root=tmp_path / "missing"))):
            pass
    with pytest.raises(StartupError, match="no exported variant"):
        with running(create_app(load_settings(model_root=tmp_path))):
            pass
    with pytest.raises(StartupError, match="TZIP_DEFAULT_VARIANT.*tiny, tiny-int8"):
        with running(make_app(variants_root, default_variant="huge")):
            pass
    with pytest.raises(StartupError, match="TZIP_PRELOAD"):
        with running(make_app(variants_root, preload=["tiny", "nope"])):
            pass
    with pytest.raises(StartupError, match="TZIP_MEMORY_BUDGET_MB"):  # not even the process at start fits
        with running(make_app(variants_root, memory_budget_mb=1)):
            pass


def test_python_m_service_exits_with_a_readable_message_on_bad_settings(tmp_path):
    env = {**os.environ, "TZIP_MAX_WAIT_MS": "-1", "TZIP_MODEL_ROOT": str(tmp_path / "none")}
    r = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "TZIP_MAX_WAIT_MS" in r.stderr and "Traceback" not in r.stderr
    env = {**os.environ, "TZIP_MODEL_ROOT": str(tmp_path / "none"), "TZIP_PORT": "8799"}
    r = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "make export" in r.stderr and "Traceback" not in r.stderr


def test_python_m_service_help_prints_the_flags_and_exits_0_and_unknown_flags_exit_2():
    r = subprocess.run([sys.executable, "-m", "service", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and all(f in r.stdout for f in ("--host", "--port", "--variant-root", "--device"))
    r = subprocess.run([sys.executable, "-m", "service", "--nope"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--nope" in r.stderr


def test_flags_override_the_variables(monkeypatch, tmp_path):
    from service.__main__ import settings_from

    monkeypatch.setenv("TZIP_PORT", "9001")
    monkeypatch.setenv("TZIP_HOST", "0.0.0.0")
    assert (settings_from([]).port, settings_from([]).host) == (9001, "0.0.0.0")
    s = settings_from(["--port", "9002", "--host", "127.0.0.2", "--variant-root", str(tmp_path), "--device", "cpu",
                       "--preload", "a,b"])
    assert (s.port, s.host, s.model_root, s.device, s.preload) == (9002, "127.0.0.2", tmp_path, "cpu", ["a", "b"])
    with pytest.raises(SystemExit) as e:
        settings_from(["--device", "tpu"])
    assert e.value.code == 2


def test_the_service_never_imports_torch():
    code = (
        "import sys\n"
        "import service.main, service.__main__, compression.runtime.translator\n"
        "from service.main import create_app\n"
        "from service.settings import load_settings\n"
        "create_app(load_settings())\n"
        "assert 'torch' not in sys.modules, 'the service imported torch'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_every_setting_is_documented():
    doc = (ROOT / "docs/service.md").read_text()
    missing = [f"TZIP_{n.upper()}" for n in Settings.model_fields if f"TZIP_{n.upper()}" not in doc]
    assert not missing, f"document {missing} in docs/service.md"
