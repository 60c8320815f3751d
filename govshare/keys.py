"""The exchange's signing keys: generated at init, kept under the keys folder, rotatable.

Keys are EC P-256 (ES256). The newest key signs access tokens, audit entries and
extract manifests; every key ever used stays published in the JWKS so that what it
signed can still be verified after a rotation.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey, KeySet

from govshare.db import utcnow
from govshare.errors import GovshareError

KEYSET_FILE = "signing-keys.json"
SESSION_SECRET_FILE = "session-secret"
ENCRYPTION_KEY_FILE = "encryption-key"
ALGORITHM = "ES256"


class KeysMissing(GovshareError):
    status, type, title = 503, "keys-missing", "Signing keys missing"


def _write_private(path: Path, content: str) -> None:
    """Write ``content`` atomically to ``path``, readable only by its owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _new_key() -> ECKey:
    key = ECKey.generate_key("P-256", private=True)
    stamp = utcnow().strftime("%Y%m%dT%H%M%S")
    kid = f"{stamp}-{key.thumbprint()[:12]}"
    return ECKey.import_key(key.as_dict(private=True), {"kid": kid, "alg": ALGORITHM, "use": "sig"})


@dataclass(frozen=True)
class Signature:
    key_id: str
    value: str  # base64url of the DER ECDSA signature


class KeyStore:
    """The signing keys in one folder; safe to share between threads."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._keys: list[ECKey] | None = None
        self._public: KeySet | None = None  # derived from _keys when they are (re)loaded
        self._verified: dict[Any, Any] = {}
        self._mtime: float | None = None
        self._session_secret: str | None = None  # written once at init, never changed
        self._fernet_key: Fernet | None = None

    @property
    def path(self) -> Path:
        return self.folder / KEYSET_FILE

    def exists(self) -> bool:
        return self.path.exists()

    def ensure(self) -> bool:
        """Create the first key (and the UI session secret) if missing; True if created."""
        created = False
        with self._lock:
            if not self.path.exists():
                self._save([_new_key()])
                created = True
            secret_path = self.folder / SESSION_SECRET_FILE
            if not secret_path.exists():
                _write_private(secret_path, base64.urlsafe_b64encode(os.urandom(32)).decode())
            encryption_path = self.folder / ENCRYPTION_KEY_FILE
            if not encryption_path.exists():
                _write_private(encryption_path, Fernet.generate_key().decode())
        return created

    def rotate(self) -> str:
        """Add a new signing key and make it the active one; returns its key id."""
        with self._lock:
            keys = list(self._load())
            key = _new_key()
            keys.append(key)
            self._save(keys)
            return key.kid

    def _save(self, keys: list[ECKey]) -> None:
        document = {"keys": [key.as_dict(private=True) for key in keys]}
        _write_private(self.path, json.dumps(document, indent=2))
        self._remember(keys, self.path.stat().st_mtime)

    def _remember(self, keys: list[ECKey], mtime: float) -> None:
        self._keys, self._mtime = keys, mtime
        # Every request verifies against the public set: build it once per key change, not per call.
        self._public = KeySet([ECKey.import_key(key.as_dict(private=False)) for key in keys])
        # Tokens verified against this set (see govshare.auth): a new set starts empty.
        self._verified = {}

    def _load(self) -> list[ECKey]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            raise KeysMissing(f"no signing keys at {self.path}; run 'govshare init'") from None
        # Reload when another process (a rotation from the CLI) changed the file.
        if self._keys is None or mtime != self._mtime:
            document = json.loads(self.path.read_text())
            self._remember([ECKey.import_key(entry) for entry in document["keys"]], mtime)
        return self._keys

    def keys(self) -> list[ECKey]:
        with self._lock:
            return list(self._load())

    def active_key(self) -> ECKey:
        """The newest key: it signs everything new."""
        return self.keys()[-1]

    def signing_keyset(self) -> KeySet:
        """The active key alone, as a set: joserfc then writes its "kid" into what it signs."""
        return KeySet([self.active_key()])

    def public_keyset(self) -> KeySet:
        with self._lock:
            self._load()
            return self._public

    def verification(self) -> tuple[KeySet, dict[str, Any]]:
        """The public key set and the memo of tokens verified against it, taken together."""
        with self._lock:
            self._load()
            return self._public, self._verified

    def public_jwks(self) -> dict:
        """The JWKS document published at /oauth/jwks."""
        return {"keys": [key.as_dict(private=False) for key in self.keys()]}

    def _fernet(self) -> Fernet:
        if self._fernet_key is None:
            self._fernet_key = Fernet((self.folder / ENCRYPTION_KEY_FILE).read_text().strip().encode())
        return self._fernet_key

    def encrypt(self, plaintext: str) -> str:
        """Encrypt a secret we must use again later (webhook secrets, source credentials)."""
        return self._fernet().encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        return self._fernet().decrypt(token.encode()).decode()

    def session_secret(self) -> str:
        if self._session_secret is None:
            self._session_secret = (self.folder / SESSION_SECRET_FILE).read_text().strip()
        return self._session_secret

    def sign(self, message: bytes) -> Signature:
        """Sign ``message`` with the active key."""
        key = self.active_key()
        private = key.private_key
        der = private.sign(message, ec.ECDSA(hashes.SHA256()))
        return Signature(key.kid, base64.urlsafe_b64encode(der).decode().rstrip("="))

    def verify(self, message: bytes, signature: Signature) -> bool:
        """Whether ``signature`` over ``message`` was made by one of our keys."""
        for key in self.keys():
            if key.kid == signature.key_id:
                der = base64.urlsafe_b64decode(signature.value + "=" * (-len(signature.value) % 4))
                try:
                    key.public_key.verify(der, message, ec.ECDSA(hashes.SHA256()))
                    return True
                except InvalidSignature:
                    return False
        return False
