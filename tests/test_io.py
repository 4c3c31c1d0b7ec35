"""pipeline.common.io: atomic writes keep the mode a plain open() would give."""
from __future__ import annotations

import os
import stat

import pytest

from pipeline.common import io


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writers_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        files = [io.atomic_write_text(tmp_path / "a.txt", "x"),
                 io.atomic_write_json(tmp_path / "a.json", {"a": 1}),
                 io.atomic_save_npz(tmp_path / "a.npz", {"a": __import__("numpy").zeros(2)}),
                 io.atomic_torch_save({"a": 1}, tmp_path / "a.pt")]
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert stat.S_IMODE(plain.stat().st_mode) == expected
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == expected, f
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
