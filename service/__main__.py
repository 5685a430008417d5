"""python -m service: validate the TZIP_* settings and the exports, then run uvicorn on TZIP_HOST:TZIP_PORT."""

from __future__ import annotations

import logging
import sys

from .settings import SettingsError, get_settings


def main() -> int:
    try:
        settings = get_settings()
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
