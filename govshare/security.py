"""Hashing of passwords and client secrets, and generation of secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# scrypt cost for people's passwords: costly enough to slow guessing, cheap enough for a
# sign-in (its time on one core is in evaluation/bench/REPORT.md); 16 MiB of memory (n * r * 128).
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """A salted scrypt hash of a person's password, self-describing its parameters."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a hash made by ``hash_password``."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(_unb64(digest))
    )
    return hmac.compare_digest(candidate, _unb64(digest))


def generate_secret(nbytes: int = 32) -> str:
    """A random secret to hand out once (client secrets, one-time passwords)."""
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    """SHA-256 of a generated secret.

    Client secrets are 256 random bits, so a slow hash adds nothing against guessing
    and would cost every token request; passwords chosen by people use scrypt instead.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def verify_secret(secret: str, stored_hash: str) -> bool:
    """Constant-time check of a secret against ``hash_secret``'s output."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)
