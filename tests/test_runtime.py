"""``alexnet.runtime``: the checksums every store and checkpoint relies on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from alexnet.runtime import atomic_write, sha256_file


def test_sha256_file_hashes_the_whole_file_past_the_first_block(tmp_path: Path) -> None:
    """A real 256-px shard is 96 MiB, far more than one 4 MiB read: every byte counts, the last one too."""
    data = np.random.default_rng(0).integers(0, 256, 9 * (1 << 20) + 123, dtype=np.uint8).tobytes()
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    changed = bytearray(data)
    changed[-1] ^= 1
    path.write_bytes(bytes(changed))
    assert sha256_file(path) == hashlib.sha256(bytes(changed)).hexdigest() != hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk=1000) == hashlib.sha256(bytes(changed)).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_atomic_write_returns_the_digest_of_what_it_wrote(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40_000  # 10 MB, written in pieces
    digest = atomic_write(tmp_path / "f", lambda f: [f.write(data[i:i + 65536]) for i in range(0, len(data), 65536)])
    assert digest == hashlib.sha256(data).hexdigest() == sha256_file(tmp_path / "f")
    assert (tmp_path / "f").read_bytes() == data and [p.name for p in tmp_path.iterdir()] == ["f"]
