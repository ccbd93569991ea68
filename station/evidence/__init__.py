"""Tamper-evident evidence log: an RFC 6962 / RFC 9162 Merkle tree over every station record, with signed
tree heads (Ed25519 station key).

- Leaf data is the canonical JSON of a record (every column of its ``inspections`` row but ``seq``, plus its
  image content hashes), so altering any byte of a stored record changes its leaf; images are named by their
  SHA-256, so altering any byte of an image is caught by re-hashing it.
- ``leaf_hash = SHA-256(0x00 || data)``, ``node = SHA-256(0x01 || left || right)``.
- After every append the station signs a tree head (size, root, time, key id). Proofs of inclusion
  (one record in a head) and of consistency (a later head extends an earlier one) follow RFC 9162 2.1.3/2.1.4.

The pure functions here take no I/O; :class:`StationKey` and :class:`EvidenceLog` touch disk and the store.
"""

from __future__ import annotations

from station.evidence.merkle import (
    RECORD_FIELDS, EvidenceError, leaf_hash, node_hash, EMPTY_ROOT, canonical_json, record_leaf_data, merkle_root,
    subtree_hash, inclusion_proof, consistency_proof, verify_inclusion, verify_consistency, Frontier,
)
from station.evidence.signing import (
    HEAD_CONTEXT, public_key_pem, key_fingerprint, key_id_of, load_public_key, StationKey, head_message,
    SignedTreeHead,
)
from station.evidence.witness import (
    WITNESS_FILE, WITNESS_FORMAT, Witness, witness_path, parse_witnesses, load_witness_file, save_witness,
    keep_acknowledged_head,
)
from station.evidence.log import (
    record_leaf_from_db, EvidenceLog, all_leaves, latest_head, head_of_size, VerifyReport, APPEND_ONLY_TRIGGERS,
    NO_WITNESS_NOTE, verify_store, open_readonly, verify_database,
)
from station.evidence.bundle import (
    BUNDLE_FORMAT, OLD_BUNDLE_FORMATS, MANIFEST_CONTEXT, SIGNED_PARTS, BundleLimits, decision_view, BUNDLE_README,
    build_bundle,
)
from station.evidence.bundle_verify import verify_bundle

# The Merkle tree hash's name before the split into a package (tests/test_evidence_log.py reads it).
_mth = subtree_hash

__all__ = [
    "RECORD_FIELDS", "EvidenceError", "leaf_hash", "node_hash", "EMPTY_ROOT", "canonical_json", "record_leaf_data",
    "merkle_root", "subtree_hash", "inclusion_proof", "consistency_proof", "verify_inclusion", "verify_consistency",
    "Frontier", "HEAD_CONTEXT", "public_key_pem", "key_fingerprint", "key_id_of", "load_public_key", "StationKey",
    "head_message", "SignedTreeHead", "WITNESS_FILE", "WITNESS_FORMAT", "Witness", "witness_path",
    "parse_witnesses", "load_witness_file", "save_witness", "keep_acknowledged_head", "record_leaf_from_db",
    "EvidenceLog", "all_leaves", "latest_head", "head_of_size", "VerifyReport", "APPEND_ONLY_TRIGGERS",
    "NO_WITNESS_NOTE", "verify_store", "open_readonly", "verify_database", "BUNDLE_FORMAT", "OLD_BUNDLE_FORMATS",
    "MANIFEST_CONTEXT", "SIGNED_PARTS", "BundleLimits", "decision_view", "BUNDLE_README", "build_bundle",
    "verify_bundle",
]
