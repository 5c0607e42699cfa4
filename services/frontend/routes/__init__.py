"""HTTP routes of the frontend, one module per area."""

from fastapi import APIRouter

from services.frontend.routes import account, admin, audit, auth, mfa, portfolio, services, users

router = APIRouter()
router.include_router(auth.router)
# Before `services`: the portfolio has a page of its own, not the generic service page.
router.include_router(portfolio.router)
router.include_router(services.router)
router.include_router(account.router)
router.include_router(mfa.router)
# Before `users`: its `/users/{username}/{action}` would otherwise take deactivate and roles.
router.include_router(admin.router, prefix="/admin")
router.include_router(users.router, prefix="/admin")
router.include_router(audit.router, prefix="/admin")
