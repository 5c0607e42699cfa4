"""HTTP routes of the frontend, one module per area."""

from fastapi import APIRouter

from services.frontend.routes import admin, auth, portfolio, services

router = APIRouter()
router.include_router(auth.router)
# Before `services`: the portfolio has a page of its own, not the generic service page.
router.include_router(portfolio.router)
router.include_router(services.router)
router.include_router(admin.router, prefix="/admin")
