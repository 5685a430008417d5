"""python -m service: validate the settings and the exports, then run uvicorn.

Settings come from TZIP_* variables (docs/service.md); the flags below override the variables they name.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .settings import Settings, SettingsError, load_settings

FLAGS = {  # flag -> the setting it overrides (and the variable it stands for)
    "host": "host", "port": "port", "variant_root": "model_root", "device": "device",
    "preload": "preload", "log_level": "log_level",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m service",
        description="Serve every exported variant (FastAPI on ONNX Runtime). Every setting is a TZIP_* "
        "environment variable (docs/service.md); these flags override the variable named beside them.",
    )
    p.add_argument("--host", help="interface to bind (TZIP_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to bind (TZIP_PORT, default 8000)")
    p.add_argument("--variant-root", metavar="DIR", help="directory of exported variants (TZIP_MODEL_ROOT, default build/onnx)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="execution device (TZIP_DEVICE, default auto)")
    p.add_argument("--preload", metavar="NAMES", help="comma-separated variants, or all, loaded at start-up (TZIP_PRELOAD)")
    p.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"], help="TZIP_LOG_LEVEL")
    return p


def settings_from(argv: list[str] | None) -> Settings:
    """The settings: TZIP_* variables, overridden by the flags given. --help exits 0, an unknown flag 2."""
    args = parser().parse_args(argv)
    return load_settings(**{setting: getattr(args, flag) for flag, setting in FLAGS.items()
                            if getattr(args, flag) is not None})


def main(argv: list[str] | None = None) -> int:
    try:
        settings = settings_from(argv)
    except SettingsError as e:
        print(e, file=sys.stderr)
        return 2
    import uvicorn

    from .main import create_app
    from .metrics import Metrics
    from .registry import StartupError, VariantRegistry

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        VariantRegistry(settings, Metrics()).discover()  # the lifespan checks again; this gives a clean message
    except StartupError as e:
        print(f"tzip service cannot start: {e}", file=sys.stderr)
        return 2
    # one worker: batching needs every request of a variant in one process
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                workers=1, timeout_graceful_shutdown=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
