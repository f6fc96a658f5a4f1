"""The HTTP edge: FastAPI app factory, routers, pages, settings and the `tongban` CLI."""
