"""Alembic migrations over kit's metadata. Each package's tables come in its own branch
(`0001` keys and idp; audit and signing branch from it), upgraded together with `heads`."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent

MODEL_MODULES = (
    "keys.models",
    "keys.pki_models",
    "idp.models",
    "audit.models",
    "signing.models",
    "certvault.models",
)


def import_models(only: tuple[str, ...] | None = None) -> None:
    """Import every package's models that exists, so `Base.metadata` is complete
    (`only` restricts it, to autogenerate one branch's revision)."""
    for name in only or MODEL_MODULES:
        if importlib.util.find_spec(name.split(".")[0]) and importlib.util.find_spec(name):
            importlib.import_module(name)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    command.upgrade(alembic_config(url), "heads")
