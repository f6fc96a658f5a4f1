"""ASGI entry point for `tongban serve` (and any ASGI server): `web.asgi:app`."""

from web.app import create_app

app = create_app()
