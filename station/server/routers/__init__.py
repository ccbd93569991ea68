"""One APIRouter per resource of the platform API; ``station.server.api.create_app`` includes them all."""

from station.server.routers import aggregates, catalogue, health, heads, images, records, rmas, tokens

ROUTERS = (health.router, records.router, images.router, heads.router, rmas.router, catalogue.router,
           aggregates.router, tokens.router)
