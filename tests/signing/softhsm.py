"""A throwaway SoftHSM2 token for the process (PKCS#11 libraries initialise once per
process, so every test module shares it). Under CI=true a missing SoftHSM2 fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from keys.pkcs11 import Pkcs11Config, Pkcs11Token

#: Debian's softhsm2 installs the module here (multi-arch path first).
MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)
_token: Pkcs11Token | None = None
_config: Pkcs11Config | None = None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"SoftHSM2 is required in CI: {reason}")
    pytest.skip(reason)


def softhsm_token() -> tuple[Pkcs11Token, Pkcs11Config]:
    global _token, _config
    if _token is not None and _config is not None:
        return _token, _config
    module = os.environ.get("SOFTHSM2_MODULE") or next(
        (p for p in MODULE_CANDIDATES if Path(p).is_file()), None
    )
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        _unavailable("softhsm2 is not installed (apt-get install softhsm2)")
        raise AssertionError("unreachable")
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        _unavailable("python-pkcs11 is not installed")
    root = Path(tempfile.mkdtemp(prefix="tongban-softhsm-"))
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    # SoftHSM2 reads its configuration when the module is first initialised.
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [
            util,
            "--init-token",
            "--free",
            "--label",
            "tongban-test",
            "--so-pin",
            "10203040",
            "--pin",
            "123456",
        ],
        check=True,
        capture_output=True,
    )
    _config = Pkcs11Config(module=module, token_label="tongban-test", user_pin="123456")
    _token = Pkcs11Token(_config)
    return _token, _config
