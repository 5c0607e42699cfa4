"""Every signed-in user's own page: "My API key" (key id, creation, last use; rotate)."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.frontend.deps import FormSession, GatewayDep, PageSession
from services.frontend.errors import GatewayError
from services.frontend.pages import render

router = APIRouter()


@router.get("/account/api-key")
async def api_key_page(request: Request, gateway: GatewayDep, session: PageSession) -> Response:
    """Show the caller's key id, creation and last use, never the key."""
    key = await gateway.my_api_key(session.bearer())
    return await render(request, "account_api_key.html", session=session, key=key)


@router.post("/account/api-key")
async def rotate_api_key(request: Request, gateway: GatewayDep, session: FormSession) -> Response:
    """Rotate the caller's API key and show the new one this once; else the gateway's reason."""
    try:
        issued = await gateway.rotate_my_api_key(session.bearer())
    except GatewayError as exc:
        if exc.status not in (403, 409):
            raise
        key = await gateway.my_api_key(session.bearer())
        error = exc.message[:1].upper() + exc.message[1:]
        return await render(
            request,
            "account_api_key.html",
            session=session,
            status_code=exc.status,
            key=key,
            error=error,
        )
    return await render(
        request,
        "admin_secret.html",
        session=session,
        title="Your new API key",
        label=f"API key (key id {issued.get('key_id', '?')})",
        secret=issued.get("api_key"),
        note="Your previous key no longer works. Store this one now: it is not shown again.",
        back=("/account/api-key", "Back to my API key"),
    )
