"""Key management: key-encryption keys, token signing keys and their rotation, JWKS,
application secrets and field encryption. Private keys never leave this package in clear
except as in-memory `Signer` objects."""
