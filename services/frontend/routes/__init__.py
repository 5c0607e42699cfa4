"""HTTP routes of the frontend, one module per area."""

from fastapi import APIRouter

from services.frontend.routes import admin, auth, services

router = APIRouter()
router.include_router(auth.router)
router.include_router(services.router)
router.include_router(admin.router, prefix="/admin")
