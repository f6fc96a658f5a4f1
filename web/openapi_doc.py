"""`openapi/openapi.json`, generated from the app without touching real state."""

from __future__ import annotations

import json

from pydantic import SecretStr

from keys.kek import new_kek
from kit.ids import b64url
from web.settings import Settings


def openapi_json() -> str:
    from web.app import create_app

    kek = new_kek()
    settings = Settings(
        database_url="sqlite://",
        issuer="https://tongban.example.gov.cn",
        keks=SecretStr(f"{kek.kid}:{b64url(kek.key)}"),
    )
    app = create_app(settings, background=False)
    return json.dumps(app.openapi(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
