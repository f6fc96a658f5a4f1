"""`openapi/openapi.json` is generated from the app; this fails when it is stale."""

import json
from pathlib import Path

from web.openapi_doc import openapi_json

COMMITTED = Path(__file__).parents[1] / "openapi" / "openapi.json"


def test_openapi_document_is_current() -> None:
    fresh = openapi_json()
    assert COMMITTED.exists(), "run `make openapi`"
    assert json.loads(COMMITTED.read_text()) == json.loads(fresh), (
        "openapi/openapi.json is stale: run `make openapi` and commit it"
    )


def test_every_public_api_is_documented() -> None:
    paths = json.loads(COMMITTED.read_text())["paths"]
    for path in (
        "/token",
        "/introspect",
        "/revoke",
        "/userinfo",
        "/authorize",
        "/jwks",
        "/.well-known/openid-configuration",
        "/logout",
        "/admin/v1/clients",
        "/admin/v1/users",
        "/admin/v1/keys",
        "/api/v1/verify",
        "/api/v1/trust",
    ):
        assert path in paths, path
