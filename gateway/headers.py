"""Security headers on every gateway response.

- `X-Content-Type-Options: nosniff`: a browser never guesses a type other than the one sent
  (an uploaded file cannot turn into a script or a page).
- `Referrer-Policy: same-origin`: signed image URLs never leak to other sites.
- `X-Frame-Options: DENY` and a CSP `frame-ancestors 'none'` on anything without its own CSP:
  no other site frames the app (clickjacking).

The web app's pages carry `WEB_CSP` (its own origin only; blob:/data: images for the query
preview and masks) and original files `FILE_CSP` (nothing runs, even if opened directly).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

WEB_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
           "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
           "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
FILE_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox; " \
           "frame-ancestors 'none'"

_ALWAYS = ((b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"same-origin"),
           (b"x-frame-options", b"DENY"))


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in _ALWAYS if h[0] not in present)
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", b"frame-ancestors 'none'"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
