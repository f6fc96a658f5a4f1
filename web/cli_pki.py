"""`tongban pki ...`: create the province's PKI, keep its root key offline, publish CRLs.

Mounted by `web.cli` as `app.add_typer(pki_app, name="pki")`. Settings, database, KEKs
and clock come from `web.runtime.build_runtime()`. Every command prints JSON.

Settings read here (with defaults until `web.settings` declares them):
`province_name` (TONGBAN_PROVINCE_NAME, default 示范省), `pkcs11_module`,
`pkcs11_token_label`, `pkcs11_pin` (TONGBAN_PKCS11_*: a PKCS#11 token for seal keys;
unset: software keys only).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import typer

from keys.kek import KeyEncryptionKeys
from keys.pkcs11 import Pkcs11Config, Pkcs11Token
from keys.pki import KeyStore, Pki, PkiError, PkiSettings
from kit.db import transaction

pki_app = typer.Typer(
    help="The provincial PKI: root and issuing CA, TSA, CRLs.", no_args_is_help=True
)

_tokens: dict[Pkcs11Config, Pkcs11Token] = {}
_tokens_lock = threading.Lock()


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    return str(getter() if getter else value)


def pkcs11_config(settings: Any) -> Pkcs11Config | None:
    """The PKCS#11 token from settings, or None (software keys only)."""
    module = getattr(settings, "pkcs11_module", None) or os.environ.get("TONGBAN_PKCS11_MODULE")
    if not module:
        return None
    label = getattr(settings, "pkcs11_token_label", None) or os.environ.get(
        "TONGBAN_PKCS11_TOKEN_LABEL", "tongban"
    )
    pin = _secret(getattr(settings, "pkcs11_pin", None)) or os.environ.get("TONGBAN_PKCS11_PIN", "")
    return Pkcs11Config(module=str(module), token_label=str(label), user_pin=pin)


def build_pki(settings: Any, keks: KeyEncryptionKeys) -> Pki:
    """The PKI service for this process. A PKCS#11 library initialises once per process,
    so its token is opened once and shared."""
    config = pkcs11_config(settings)
    token = None
    if config is not None:
        with _tokens_lock:
            token = _tokens.get(config)
            if token is None:
                token = _tokens[config] = Pkcs11Token(config)
    province = getattr(settings, "province_name", None) or os.environ.get(
        "TONGBAN_PROVINCE_NAME", "示范省"
    )
    return Pki(KeyStore(keks, token), PkiSettings(issuer=settings.issuer, province=province))


def runtime_pki() -> tuple[Any, Pki]:
    from web.runtime import build_runtime

    runtime = build_runtime()
    return runtime, build_pki(runtime.settings, runtime.keks)


def _print(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _fail(exc: Exception) -> None:
    _print({"error": getattr(exc, "code", "error"), "description": str(exc)})
    raise typer.Exit(1)


@pki_app.command("init")
def init() -> None:
    """Create the hierarchy of a new province: root CA, issuing CA, timestamp authority and
    the first CRLs."""
    runtime, pki = runtime_pki()
    try:
        with transaction(runtime.factory) as session:
            _print(pki.init(session, runtime.clock.now()))
    except PkiError as exc:
        _fail(exc)


@pki_app.command("status")
def status() -> None:
    """The CAs, where their keys are, and their CRLs."""
    runtime, pki = runtime_pki()
    with runtime.factory() as session:
        _print(pki.summary(session))


@pki_app.command("export-root")
def export_root(
    out: Path = typer.Option(..., "--out", help="File for the wrapped root key (created 0600)."),
) -> None:
    """Write the root key, wrapped by the KEKs, to FILE and remove it from the service.
    The service goes on with the issuing CA; keep FILE (and the KEKs) offline."""
    runtime, pki = runtime_pki()
    if out.exists():
        _fail(PkiError(f"{out} exists; refusing to overwrite it"))
    try:
        with transaction(runtime.factory) as session:
            blob = pki.export_root(session, runtime.clock.now())
            # The key leaves the database only once the file is safely written: the
            # transaction commits after this block.
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
    except PkiError as exc:
        _fail(exc)
    _print({"exported": str(out), "root_key": "offline"})


@pki_app.command("import-root")
def import_root(
    in_: Path = typer.Option(..., "--in", help="A file written by export-root."),
) -> None:
    """Bring the root key back online for a ceremony (re-sign the root CRL, new TSA or
    issuing CA certificate). Export it again afterwards."""
    runtime, pki = runtime_pki()
    try:
        with transaction(runtime.factory) as session:
            pki.import_root(session, in_.read_bytes())
    except PkiError as exc:
        _fail(exc)
    _print({"imported": str(in_), "root_key": "online"})


@pki_app.command("crl")
def crl() -> None:
    """Re-sign the CRL of every CA whose key is online (run it from a timer well within
    the CRL lifetime); the root's CRL is reported `offline` when its key is."""
    runtime, pki = runtime_pki()
    with transaction(runtime.factory) as session:
        result = pki.refresh_crls(session, runtime.clock.now())
        _print(
            {
                name: {"status": state, "url": pki.settings.crl_url(name)}
                for name, state in result.items()
            }
        )
