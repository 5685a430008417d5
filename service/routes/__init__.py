"""One APIRouter per resource."""

from . import attention, health, metrics, page, translate, variants

ROUTERS = [translate.router, variants.router, health.router, metrics.router, attention.router, page.router]
