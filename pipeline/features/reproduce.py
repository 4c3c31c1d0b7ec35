"""Features of new footage made exactly as a checkpoint's training features were: the extractor
settings taken from its record (:func:`resolve_extractor`), the check that they match
(:func:`check_extractor`) and the command-line flags that may override them (detect, watch).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.features.video import COVERAGES, coverage_of

#: How the network is computed, not what it computes: chosen here (--runtime, --precision), never
#: taken from the checkpoint's record nor a reason to refuse it (torch / onnxruntime / OpenVINO,
#: fp32 / bf16: features within the accuracy guard of issue 24, cosine >= 0.999 to fp32 and Ped2 AUC
#: within 0.005; bench/RESULTS.md "Stage 1 on CPU").
RUNTIME_FLAGS = ("runtime", "precision")
#: FeatureExtractor arguments never taken from the checkpoint's record: where to run, how fast;
#: weights, random_init and seed are resolved on their own (resolve_extractor).
#: 'crops' is derived: the record's coverage (coverage_of: from crops in older records) and grid give it.
NOT_FROM_RECORD = ("self", "device", "batch_size", "threads", "channels_last", "weights", "random_init", "seed",
                   "crops", *RUNTIME_FLAGS)
#: detect flag -> FeatureExtractor argument / meta key
EXTRACTOR_FLAGS = {"profile": "profile", "weights": "weights", "random_init": "random_init",
                   "seed": "seed", "coverage": "coverage", "grid": "grid", "crops": "crops", "short_side": "short_side",
                   "crop_size": "crop_size", "norm": "norm", "tail": "tail"}


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or incompatible with the requested extraction."""


# ----------------------------------------------------------------------------- extractor settings

def resolve_extractor(trained: dict | None, flags: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """FeatureExtractor arguments for detection from the checkpoint's extractor record.

    ``trained``: the checkpoint's ``extractor`` meta (None when unknown); ``flags``: the user's
    extractor flags, None where not given. A flag that contradicts the record raises
    CheckpointError. Returns (kwargs, notes for the user).
    """
    given = {k: v for k, v in flags.items() if v is not None and v is not False}
    runtime = {k: given.pop(k) for k in RUNTIME_FLAGS if k in given}
    notes: list[str] = []
    if trained is not None:
        trained = dict(trained, coverage=coverage_of(trained))   # older records: from crops
    if trained is None:
        notes.append("the checkpoint does not record how its training features were extracted; "
                     "extracting with " + (", ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items())
                                           or "the extractor's defaults")
                     + " -- make sure this matches its training features")
        return dict(given, **runtime), notes
    bad = []
    for flag, value in given.items():
        if flag == "weights":
            continue  # compared by sha256 once loaded
        rec = trained.get(EXTRACTOR_FLAGS[flag])
        if flag == "seed" and not trained.get("random_init"):
            continue
        if rec is not None and rec != value:
            bad.append(f"--{flag.replace('_', '-')} {value} (trained with {rec})")
    if bad:
        raise CheckpointError("the requested extraction does not match the features the checkpoint was "
                              "trained on: " + "; ".join(bad) + ". Scores of features from another "
                              "extractor are meaningless; drop these flags (detect reads the settings "
                              "from the checkpoint) or use a checkpoint trained on such features.")
    import inspect
    from pipeline.features.extractor import FeatureExtractor

    kw: dict[str, Any] = {}     # every recorded setting the extractor takes (a new one needs no change here)
    for key in inspect.signature(FeatureExtractor.__init__).parameters:
        if key not in NOT_FROM_RECORD and trained.get(key) is not None:
            kw[key] = trained[key]
    kw.update(runtime)
    if trained.get("random_init"):
        if given.get("weights"):
            raise CheckpointError(f"--weights {given['weights']}: the checkpoint was trained on features of an "
                                  f"I3D with random weights (seed {trained.get('seed', 0)}), not on pretrained ones")
        kw["random_init"] = True
        kw["seed"] = trained.get("seed", given.get("seed", 0))
        if trained.get("seed") is None:
            notes.append("the checkpoint's extractor record has no seed for its random weights; assuming "
                         f"seed {kw['seed']}")
    else:
        path = given.get("weights") or trained.get("weights")
        if path and Path(path).is_file():
            kw["weights"] = str(path)
        elif given.get("weights"):
            raise CheckpointError(f"--weights {path}: file not found")
        # else: the published file through the torch hub cache; its sha256 is checked below
    return kw, notes


def check_extractor(trained: dict | None, meta: dict) -> None:
    """Raise CheckpointError when the built extractor's meta differs from the training record in any
    recorded setting (all of its keys but featstore.NOT_COMPARED; a key the record lacks is not
    compared, as in records written before that setting existed)."""
    from pipeline.features.featstore import record_diff

    if trained is None:
        return
    trained = dict(trained, coverage=coverage_of(trained))   # older records: from crops
    rec = {k: v for k, v in trained.items() if v is not None and k != "videos_described" and k not in RUNTIME_FLAGS}
    diff = record_diff(rec, {k: meta.get(k) for k in rec})
    if diff:
        raise CheckpointError("the extractor differs from the one the checkpoint was trained with ("
                              + "; ".join(f"{k}: trained {a}, now {b}" for k, (a, b) in diff.items())
                              + "). For weights: pass --weights with the same file "
                              "(sha256 " + str(trained.get("weights_sha256")) + ").")


# ----------------------------------------------------------------------------- CLI

def add_extractor_flags(p: argparse.ArgumentParser, precision_default: str = "fp32") -> None:
    """The extractor flags of detect and watch (EXTRACTOR_FLAGS: default None = as the checkpoint records)
    and the runtime flags (RUNTIME_FLAGS: this machine's choice)."""
    from pipeline.features.runtimes import RUNTIMES

    g = p.add_argument_group("extractor (default: as recorded in the checkpoint; a contradicting value is refused)")
    g.add_argument("--weights", default=None, help="I3D weights file (needed when the recorded path is not on this machine "
                                                   "and the file is not in the torch hub cache; checked by sha256)")
    g.add_argument("--profile", choices=["32x2", "8x8", "inception"], default=None, help="I3D network")
    g.add_argument("--random-init", action="store_true", default=None,
                   help="random I3D weights (only for checkpoints that record no extractor)")
    g.add_argument("--seed", type=int, default=None, help="seed of the random weights")
    g.add_argument("--coverage", choices=list(COVERAGES), default=None,
                   help="the whole frame in regions, the whole frame, the centre crop or ten crops")
    g.add_argument("--grid", default=None, help="ROWSxCOLS regions (--coverage grid)")
    g.add_argument("--crops", type=int, choices=[1, 10], default=None, help="centre crop or ten crops (older spelling)")
    g.add_argument("--short-side", type=int, default=None, help="frames resized to this short side (pixels)")
    g.add_argument("--crop-size", type=int, default=None, help="square crop side (pixels; centre / ten crops)")
    g.add_argument("--norm", default=None, choices=["kinetics", "minus1to1"], help="pixel normalisation")
    g.add_argument("--tail", default=None, choices=["pad", "drop"],
                   help="last partial clip: pad (repeat the last frame) or drop")
    r = p.add_argument_group("how the network runs (free to choose: not compared with the checkpoint)")
    r.add_argument("--runtime", default="auto", choices=list(RUNTIMES),
                   help="auto = the fastest installed for the precision (CPU: openvino, then onnxruntime for fp32, then torch; GPU: torch); "
                        "onnxruntime / openvino are optional (pip install onnxruntime openvino)")
    r.add_argument("--precision", default=precision_default, choices=["fp32", "bf16", "auto"],
                   help="network precision; auto = bf16 on a GPU or a CPU with native bf16 (avx512_bf16 / AMX)")
