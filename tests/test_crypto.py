from __future__ import annotations

import base64

import pytest

from gateway.crypto import DecryptionError, Keyring, aad_for, fingerprint_id
from gateway.errors import ConfigError

KEY1 = base64.b64encode(b"1" * 32).decode()
KEY2 = base64.b64encode(b"2" * 32).decode()


def test_round_trip_and_envelope_shape() -> None:
    ring = Keyring.from_settings(f"k1:{KEY1}", None)
    envelope = ring.encrypt(b'{"password": "hunter2"}', aad_for("ten_a", "email"))
    version, key_id, payload = envelope.split(":")
    assert (version, key_id) == ("v1", "k1")
    assert b"hunter2" not in base64.b64decode(payload)
    assert ring.decrypt(envelope, aad_for("ten_a", "email")) == b'{"password": "hunter2"}'


def test_same_plaintext_encrypts_differently_each_time() -> None:
    ring = Keyring.from_settings(f"k1:{KEY1}", None)
    aad = aad_for("ten_a", "email")
    assert ring.encrypt(b"x", aad) != ring.encrypt(b"x", aad)


def test_a_flipped_byte_fails_to_decrypt() -> None:
    ring = Keyring.from_settings(f"k1:{KEY1}", None)
    aad = aad_for("ten_a", "email")
    envelope = ring.encrypt(b"secret", aad)
    prefix, payload = envelope.rsplit(":", 1)
    blob = bytearray(base64.b64decode(payload))
    for index in (0, 12, len(blob) - 1):  # nonce, ciphertext, tag
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        with pytest.raises(DecryptionError):
            ring.decrypt(f"{prefix}:{base64.b64encode(tampered).decode()}", aad)


@pytest.mark.parametrize("other_aad", [aad_for("ten_b", "email"), aad_for("ten_a", "whatsapp")])
def test_ciphertext_moved_to_another_row_fails(other_aad: bytes) -> None:
    ring = Keyring.from_settings(f"k1:{KEY1}", None)
    envelope = ring.encrypt(b"secret", aad_for("ten_a", "email"))
    with pytest.raises(DecryptionError):
        ring.decrypt(envelope, other_aad)


def test_old_keys_decrypt_and_primary_encrypts() -> None:
    old = Keyring.from_settings(f"k1:{KEY1}", None)
    envelope = old.encrypt(b"secret", b"aad")
    ring = Keyring.from_settings(f"k2:{KEY2},k1:{KEY1}", None)
    assert ring.decrypt(envelope, b"aad") == b"secret"
    assert ring.needs_rotation(envelope)
    assert ring.encrypt(b"secret", b"aad").startswith("v1:k2:")
    without_old = Keyring.from_settings(f"k2:{KEY2}", None)
    with pytest.raises(DecryptionError, match="not in the keyring"):
        without_old.decrypt(envelope, b"aad")


def test_single_key_gets_a_fingerprint_id() -> None:
    ring = Keyring.from_settings(None, KEY1)
    assert ring.primary_id == fingerprint_id(b"1" * 32)
    assert Keyring.from_settings(None, KEY2).primary_id != ring.primary_id


def test_hex_keys_are_accepted() -> None:
    assert Keyring.from_settings(None, "ab" * 32).encrypt(b"x", b"").startswith("v1:")


@pytest.mark.parametrize(
    ("keys", "key", "message"),
    [
        (None, base64.b64encode(b"short").decode(), "32 bytes"),
        (None, "not base64 at all!!", "base64"),
        ("k1", None, "<id>:<base64 key>"),
        (f"k1:{KEY1},k1:{KEY2}", None, "duplicated"),
        (None, None, "must be set"),
    ],
)
def test_bad_keys_fail_with_one_clear_line(keys: str | None, key: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Keyring.from_settings(keys, key)
    assert "\n" not in str(info.value)
    assert KEY1 not in str(info.value)


@pytest.mark.parametrize("envelope", ["", "v2:k1:AAAA", "v1:k1:!!!", "v1:k1:AAAA"])
def test_malformed_envelopes_are_rejected(envelope: str) -> None:
    ring = Keyring.from_settings(f"k1:{KEY1}", None)
    with pytest.raises(DecryptionError):
        ring.decrypt(envelope, b"")
