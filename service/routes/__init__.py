"""One APIRouter per resource."""

from . import health, metrics, translate, variants

ROUTERS = [translate.router, variants.router, health.router, metrics.router]
