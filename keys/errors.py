from kit.errors import TongbanError


class KeysError(TongbanError):
    code = "key_error"
    status = 500


class UnwrapError(KeysError):
    """Wrapped material could not be decrypted by any configured key-encryption key."""

    code = "unwrap_failed"
