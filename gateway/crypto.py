"""AES-256-GCM keyring for the secret fields of channel configurations.

Envelope: `v1:<key_id>:<base64(nonce ‖ ciphertext ‖ tag)>`, 12-byte random nonce. The
associated data binds a ciphertext to its row (tenant id + channel type), so a ciphertext
copied into another tenant's row does not decrypt. The first key of the ring is the primary:
it encrypts; every key decrypts, which is what makes rotation possible.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import ConfigError

_VERSION = "v1"
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class DecryptionError(Exception):
    """The envelope is malformed, its key is unknown, or it was tampered with or moved."""


def decode_key(raw: str, name: str) -> bytes:
    raw = raw.strip()
    key: bytes | None = None
    if re.fullmatch(r"[0-9a-fA-F]{64}", raw):
        key = bytes.fromhex(raw)
    else:
        for decoder in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                key = decoder(raw + "=" * (-len(raw) % 4))
                break
            except (binascii.Error, ValueError):
                continue
    if key is None:
        raise ConfigError(f"{name} is not valid base64 or hex")
    if len(key) != 32:
        raise ConfigError(f"{name} must decode to 32 bytes for AES-256, got {len(key)}")
    return key


def fingerprint_id(key: bytes) -> str:
    """Key id for a single ENCRYPTION_KEY: a change of key shows up as an unknown id."""
    return "k" + hashlib.sha256(b"channel-gateway key id" + key).hexdigest()[:8]


def aad_for(tenant_id: str, channel_type: str, version: int = 0) -> bytes:
    """What a ciphertext is bound to: its row (tenant id + channel type) and, from version 1
    on, the row's secrets version, which every write increments — so a ciphertext copied to
    another row, or an older one written back into the same row, fails to decrypt."""
    if version <= 0:  # written before versions were bound in
        return f"{tenant_id}\x1f{channel_type}".encode()
    return f"{tenant_id}\x1f{channel_type}\x1fv{version}".encode()


class Keyring:
    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ConfigError("ENCRYPTION_KEY or ENCRYPTION_KEYS must be set")
        self._keys = dict(keys)
        if len(self._keys) != len(keys):
            raise ConfigError("ENCRYPTION_KEYS has a duplicated key id")
        self.primary_id = keys[0][0]
        self._aead = {key_id: AESGCM(key) for key_id, key in keys}

    @classmethod
    def from_settings(cls, encryption_keys: str | None, encryption_key: str | None) -> Keyring:
        if encryption_keys:
            keys = []
            for index, item in enumerate(p.strip() for p in encryption_keys.split(",")):
                key_id, sep, raw = item.partition(":")
                if not sep or not _KEY_ID.match(key_id):
                    raise ConfigError(
                        f"ENCRYPTION_KEYS entry {index + 1} must be <id>:<base64 key>"
                    )
                keys.append((key_id, decode_key(raw, f"ENCRYPTION_KEYS entry {key_id!r}")))
            return cls(keys)
        if encryption_key:
            key = decode_key(encryption_key, "ENCRYPTION_KEY")
            return cls([(fingerprint_id(key), key)])
        raise ConfigError("ENCRYPTION_KEY or ENCRYPTION_KEYS must be set")

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def encrypt(self, plaintext: bytes, aad: bytes) -> str:
        nonce = os.urandom(12)
        sealed = self._aead[self.primary_id].encrypt(nonce, plaintext, aad)
        return f"{_VERSION}:{self.primary_id}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, envelope: str, aad: bytes) -> bytes:
        _version, key_id, payload = self.parse(envelope)
        aead = self._aead.get(key_id)
        if aead is None:
            raise DecryptionError(f"key {key_id!r} is not in the keyring")
        try:
            blob = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise DecryptionError("envelope payload is not base64") from None
        if len(blob) < 12 + 16:
            raise DecryptionError("envelope payload is too short")
        try:
            return aead.decrypt(blob[:12], blob[12:], aad)
        except InvalidTag:
            raise DecryptionError("ciphertext failed authentication") from None

    @staticmethod
    def parse(envelope: str) -> tuple[str, str, str]:
        parts = envelope.split(":", 2)
        if len(parts) != 3 or parts[0] != _VERSION:
            raise DecryptionError("not a v1 envelope")
        return parts[0], parts[1], parts[2]

    def needs_rotation(self, envelope: str) -> bool:
        return self.parse(envelope)[1] != self.primary_id
