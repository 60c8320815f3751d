"""Hybrid encryption of extract files to a department's RSA public key.

A fresh AES-256 key encrypts the file in 1 MiB chunks with AES-GCM; the key itself is
encrypted with RSA-OAEP (SHA-256) to the department's public key. Each chunk's nonce
holds a random prefix and the chunk's number, and the final chunk is marked in the
associated data, so chunks cannot be reordered, dropped or cut off unnoticed.

Layout: b"GSX1" | u16 key length | RSA-OAEP(key) | 8-byte nonce prefix |
        then per chunk: u32 ciphertext length | ciphertext (with GCM tag).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from govshare.errors import InvalidInput

MAGIC = b"GSX1"
CHUNK = 1 << 20
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    """A department's RSA public key (2048 bits or more), or InvalidInput saying why not."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise InvalidInput("public_key: not a PEM-encoded public key") from None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise InvalidInput("public_key: an RSA key of 2048 bits or more is required")
    return key


def _aad(index: int, last: bool) -> bytes:
    return struct.pack(">Q?", index, last)


def encrypt_file(source: Path, target: Path, public_key_pem: str) -> None:
    """Write ``source`` encrypted to ``target`` for the holder of the private key."""
    public_key = load_public_key(public_key_pem)
    key = AESGCM.generate_key(bit_length=256)
    aes, prefix = AESGCM(key), os.urandom(8)
    wrapped = public_key.encrypt(key, _OAEP)
    size = source.stat().st_size
    with source.open("rb") as plain, target.open("wb") as out:
        out.write(MAGIC + struct.pack(">H", len(wrapped)) + wrapped + prefix)
        index, done = 0, 0
        while True:
            chunk = plain.read(CHUNK)
            done += len(chunk)
            last = done >= size
            sealed = aes.encrypt(prefix + struct.pack(">I", index), chunk, _aad(index, last))
            out.write(struct.pack(">I", len(sealed)) + sealed)
            index += 1
            if last:
                break


def decrypt_file(source: Path, target: Path, private_key_pem: bytes, password: bytes | None = None) -> None:
    """Reverse ``encrypt_file`` with the department's private key; raises on any tampering."""
    private_key = serialization.load_pem_private_key(private_key_pem, password=password)
    with source.open("rb") as sealed_file, target.open("wb") as out:
        if sealed_file.read(4) != MAGIC:
            raise ValueError("not a govshare encrypted extract")
        (length,) = struct.unpack(">H", sealed_file.read(2))
        aes = AESGCM(private_key.decrypt(sealed_file.read(length), _OAEP))
        prefix = sealed_file.read(8)
        index = 0
        while True:
            header = sealed_file.read(4)
            if len(header) < 4:
                raise ValueError("the encrypted extract is cut short")
            (size,) = struct.unpack(">I", header)
            sealed = sealed_file.read(size)
            at_end = sealed_file.peek(1) == b"" if hasattr(sealed_file, "peek") else False
            out.write(aes.decrypt(prefix + struct.pack(">I", index), sealed, _aad(index, at_end)))
            index += 1
            if at_end:
                return
