"""The station's Ed25519 key and the tree heads it signs."""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from station.evidence.merkle import EvidenceError, canonical_json


HEAD_CONTEXT = b"inspection-station tree head v1\n"


# ------------------------------------------------------------------------------------------- keys


def ed25519_primitives():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    except ImportError:  # pragma: no cover - the dependency is declared
        raise EvidenceError("the evidence log needs the `cryptography` package: pip install cryptography") from None
    return InvalidSignature, serialization, Ed25519PrivateKey, Ed25519PublicKey


def public_key_pem(public_key) -> bytes:
    _, ser, _, _ = ed25519_primitives()
    return public_key.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)


def key_fingerprint(public_key) -> str:
    """SHA-256 of the raw 32-byte public key, hex: what a brand compares over the phone; ``key_id`` is its head."""
    _, ser, _, _ = ed25519_primitives()
    raw = public_key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def key_id_of(public_key) -> str:
    return key_fingerprint(public_key)[:16]


def load_public_key(data: bytes):
    _, ser, _, Ed25519PublicKey = ed25519_primitives()
    from cryptography.exceptions import UnsupportedAlgorithm

    if not isinstance(data, bytes) or not data.strip():
        raise EvidenceError("not a PEM public key: the file is empty")
    try:
        key = ser.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise EvidenceError(f"not a PEM public key: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise EvidenceError("the public key is not an Ed25519 key")
    return key


class StationKey:
    """The station's Ed25519 signing key, in a PEM file created (0600) on first use. No I/O until ``load``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._private = None

    def load(self) -> "StationKey":
        _, ser, Ed25519PrivateKey, _ = ed25519_primitives()
        try:
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(self.path.parent, 0o700)
                key = Ed25519PrivateKey.generate()
                pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
                tmp = self.path.with_suffix(f".tmp{os.getpid()}")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, pem)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                try:
                    os.link(tmp, self.path)  # never replaces a key another process created meanwhile
                except FileExistsError:
                    pass
                finally:
                    tmp.unlink(missing_ok=True)
            mode = self.path.stat().st_mode & 0o777
            if mode & 0o077:
                raise EvidenceError(f"station key {self.path} is readable by others (mode {mode:o}): "
                                    f"chmod 600 {self.path}")
            key = ser.load_pem_private_key(self.path.read_bytes(), password=None)
        except OSError as exc:
            raise EvidenceError(f"cannot read or create the station key {self.path}: {exc.strerror}") from None
        except ValueError as exc:
            raise EvidenceError(f"station key {self.path} is corrupt ({exc}); restore it from backup") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise EvidenceError(f"station key {self.path} is not an Ed25519 key")
        self._private = key
        return self

    @property
    def private(self):
        if self._private is None:
            self.load()
        return self._private

    @property
    def public(self):
        return self.private.public_key()

    def public_pem(self) -> bytes:
        return public_key_pem(self.public)

    def key_id(self) -> str:
        return key_id_of(self.public)

    def sign_head(self, tree_size: int, root: bytes, signed_at: str) -> "SignedTreeHead":
        kid = self.key_id()
        msg = head_message(tree_size, root.hex(), signed_at, kid)
        sig = self.private.sign(msg)
        return SignedTreeHead(tree_size, root.hex(), signed_at, kid, base64.b64encode(sig).decode())


# ------------------------------------------------------------------------------------------- heads


def head_message(tree_size: int, root_hex: str, signed_at: str, key_id: str) -> bytes:
    return HEAD_CONTEXT + canonical_json({"tree_size": tree_size, "root_hash": root_hex, "signed_at": signed_at,
                                          "key_id": key_id})


def is_hex(value, length: int | None = None) -> bool:
    if not isinstance(value, str) or (length is not None and len(value) != length) or len(value) % 2:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return value == value.lower()


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    tree_size: int
    root_hash: str  # hex
    signed_at: str
    key_id: str
    signature: str  # base64 Ed25519 over head_message(...)

    def to_json(self) -> dict:
        return {"tree_size": self.tree_size, "root_hash": self.root_hash, "signed_at": self.signed_at,
                "key_id": self.key_id, "signature": self.signature}

    @classmethod
    def from_json(cls, obj) -> "SignedTreeHead":
        """Strict: an object with an integer size >= 0, a 64-hex root and string time, key id and signature."""
        if not isinstance(obj, dict):
            raise EvidenceError(f"not a signed tree head: a JSON object is needed, not {type(obj).__name__}")
        missing = [k for k in ("tree_size", "root_hash", "signed_at", "key_id", "signature") if k not in obj]
        if missing:
            raise EvidenceError(f"not a signed tree head: {', '.join(missing)} missing")
        size = obj["tree_size"]
        if not is_int(size) or not 0 <= size < 2 ** 63:
            raise EvidenceError(f"not a signed tree head: tree_size {str(size)[:40]!r} is not a size")
        if not is_hex(obj["root_hash"], 64):
            raise EvidenceError("not a signed tree head: root_hash is not 64 hex digits")
        for k in ("signed_at", "key_id", "signature"):
            if not isinstance(obj[k], str) or len(obj[k]) > 256:
                raise EvidenceError(f"not a signed tree head: {k} is not a short string")
        return cls(size, obj["root_hash"], obj["signed_at"], obj["key_id"], obj["signature"])

    def verify(self, public_key) -> bool:
        InvalidSignature, _, _, _ = ed25519_primitives()
        try:
            sig = base64.b64decode(self.signature, validate=True)
            public_key.verify(sig, head_message(self.tree_size, self.root_hash, self.signed_at, self.key_id))
        except (InvalidSignature, ValueError, TypeError):
            return False
        return self.key_id == key_id_of(public_key)
