"""A department system as a real relying party: Authlib's OAuth 2 client for the code
flow with PKCE, joserfc for ID-token and logout-token validation, its own sessions, and a
back-channel logout endpoint that ends them. It knows nothing of Tongban but the issuer."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


@dataclass
class RelyingParty:
    name: str
    issuer: str
    client_id: str
    client_secret: str
    port: int
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: dict[str, dict[str, str]] = field(default_factory=dict)
    logout_tokens: list[dict[str, Any]] = field(default_factory=list)
    server: uvicorn.Server | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _client(self) -> OAuth2Client:
        return OAuth2Client(
            self.client_id,
            self.client_secret,
            scope="openid profile",
            redirect_uri=f"{self.base}/callback",
            code_challenge_method="S256",
        )

    def _keys(self) -> KeySet:
        meta = httpx.get(f"{self.issuer}/.well-known/openid-configuration").json()
        return KeySet.import_key_set(httpx.get(meta["jwks_uri"]).json())

    async def login(self, request: Request) -> Response:
        verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
        url, state = self._client().create_authorization_url(
            f"{self.issuer}/authorize",
            code_verifier=verifier,
            nonce=nonce,
            **(
                {"acr_values": request.query_params["acr"]} if "acr" in request.query_params else {}
            ),
        )
        self.pending[state] = {"verifier": verifier, "nonce": nonce}
        return RedirectResponse(url, status_code=303)

    async def callback(self, request: Request) -> Response:
        params = request.query_params
        if "error" in params:
            return PlainTextResponse(f"error: {params['error']}", status_code=400)
        pending = self.pending.pop(params["state"])
        assert params["iss"] == self.issuer  # RFC 9207 mix-up defence
        token = self._client().fetch_token(
            f"{self.issuer}/token",
            authorization_response=str(request.url),
            code_verifier=pending["verifier"],
        )
        claims = jwt.decode(token["id_token"], self._keys()).claims
        assert claims["iss"] == self.issuer and claims["aud"] == self.client_id
        assert claims["nonce"] == pending["nonce"] and claims["exp"] > time.time()
        local = secrets.token_urlsafe(16)
        self.sessions[local] = {
            "sub": claims["sub"],
            "sid": claims["sid"],
            "id_token": token["id_token"],
            "name": claims.get("name"),
        }
        info = httpx.get(
            f"{self.issuer}/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}
        ).json()
        self.sessions[local]["name"] = info.get("name")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(f"rp_{self.port}", local, httponly=True, samesite="lax")
        return response

    async def home(self, request: Request) -> Response:
        session = self.sessions.get(request.cookies.get(f"rp_{self.port}", ""))
        if session is None:
            return HTMLResponse(f"<h1>{self.name}</h1><p id='status'>signed out</p>")
        return HTMLResponse(f"<h1>{self.name}</h1><p id='status'>welcome {session['name']}</p>")

    async def logout(self, request: Request) -> Response:
        # end the local session first, then ask the provider to end the SSO session
        session = self.sessions.pop(request.cookies.get(f"rp_{self.port}", ""), None)
        if session is None:
            return RedirectResponse("/", status_code=303)
        return RedirectResponse(
            f"{self.issuer}/logout?id_token_hint={session['id_token']}"
            f"&post_logout_redirect_uri={self.base}/&state=x",
            status_code=303,
        )

    async def backchannel(self, request: Request) -> Response:
        """OpenID Back-Channel Logout 1.0 §2.6 validation, then end the local sessions."""
        form = await request.form()
        token = jwt.decode(str(form["logout_token"]), self._keys())
        claims = token.claims
        if (
            token.header.get("typ") != "logout+jwt"
            or claims["iss"] != self.issuer
            or claims["aud"] != self.client_id
            or BACKCHANNEL_EVENT not in claims["events"]
            or "nonce" in claims
            or not claims.get("sid")
        ):
            return PlainTextResponse("bad logout token", status_code=400)
        self.logout_tokens.append(claims)
        for key in [k for k, s in self.sessions.items() if s["sid"] == claims["sid"]]:
            del self.sessions[key]
        return Response(status_code=200, headers={"Cache-Control": "no-store"})

    def start(self) -> None:
        app = Starlette(
            routes=[
                Route("/", self.home),
                Route("/login", self.login),
                Route("/callback", self.callback),
                Route("/logout", self.logout),
                Route("/backchannel-logout", self.backchannel, methods=["POST"]),
            ]
        )
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        threading.Thread(target=self.server.run, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
