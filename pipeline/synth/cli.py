"""``python -m pipeline.synth``: write a generated feature dataset (see :mod:`pipeline.synth.features`).
"""
from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from pipeline.synth.features import OLD_DEFAULTS, PRESETS, PROFILES, make_dataset
from pipeline.common.cli import interrupted, user_message

# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.synth",
        description="Generate a synthetic I3D-like feature dataset in a real dataset's on-disk format "
                    "(UCF-Crime RTFM layout, ShanghaiTech, XD-Violence), with per-clip truth in "
                    "synth_truth.npz. See the module docstring for the feature model.",
        epilog="Presets: tiny (8+8 train, 4+4 test, 20-40 clips), small (60+60 / 30+30, 30-150 clips), "
               "ucf-scale (800 normal + 810 abnormal train, 150+140 test, UCF-Crime-like lengths, float16). "
               "Explicit flags override the preset.")
    p.add_argument("--out", required=True, type=Path, help="output data root (must be absent or empty)")
    p.add_argument("--dataset", default="ucf", choices=("ucf", "sht", "xd"), help="format to write (default ucf)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="size preset")
    base = {k: v.default for k, v in inspect.signature(make_dataset).parameters.items()}

    def dflt(key):   # the preset's value wins over make_dataset's default
        if key in OLD_DEFAULTS:
            return (f"default: the profile's (old: the preset's, else {OLD_DEFAULTS[key]}; "
                    + "; ".join(f"{n}: {getattr(pr, key)}" for n, pr in PROFILES.items()) + ")")
        return f"default: the preset's, else {base[key]}"
    for flag, help_ in (("n-train-normal", "normal training videos"), ("n-train-abnormal", "abnormal training videos"),
                        ("n-test-normal", "normal test videos"), ("n-test-abnormal", "abnormal test videos"),
                        ("min-clips", "fewest 16-frame clips per video"), ("max-clips", "most clips per video"),
                        ("crops", "crops per clip (RTFM uses 10)"), ("dim", "feature width (I3D R50: 2048)")):
        p.add_argument(f"--{flag}", type=int, help=f"{help_} ({dflt(flag.replace('-', '_'))})")
    p.add_argument("--lengths", choices=("uniform", "ucf", "ped2"), help=f"clip-count distribution ({dflt('lengths')})")
    p.add_argument("--dtype", choices=("float16", "float32", "float64"), help=f"stored dtype ({dflt('dtype')})")
    p.add_argument("--signal", type=float, help=f"anomaly strength, 0 = chance, 3 = easy ({dflt('signal')})")
    p.add_argument("--private-motion", type=float,
                   help="share of each video's smooth variation along its own directions instead of shared "
                        "ones, in [0, 1] (default 0; real features are closer to 1)")
    p.add_argument("--profile", default="old", choices=("old",) + tuple(PROFILES),
                   help="feature model: old (default; the original generator, unchanged), ped2 (calibrated to real "
                        "UCSD Ped2 I3D clips: 1024-d, Ped2's 8, 10 or 12 clips, anomalies fill 45-100%% of a video) or ucf "
                        "(calibrated to UCF-Crime's C3D segments: 2048-d, UCF-Crime lengths, anomalies 4-26%%). "
                        "With ped2/ucf a preset gives only the video counts, crops and dtype; the profile sets "
                        "--dim and the lengths unless given")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    a = p.parse_args(argv)
    kw = dict(PRESETS[a.preset]) if a.preset else {}
    if a.profile != "old":                 # the calibrated profiles bring their own width and lengths
        kw = {k: v for k, v in kw.items() if k not in ("dim", "min_clips", "max_clips", "lengths")}
    for k in ("n_train_normal", "n_train_abnormal", "n_test_normal", "n_test_abnormal", "min_clips",
              "max_clips", "crops", "dim", "lengths", "dtype", "signal", "private_motion"):
        if getattr(a, k) is not None:
            kw[k] = getattr(a, k)
    try:
        s = make_dataset(a.out, dataset=a.dataset, seed=a.seed, profile=a.profile, overwrite=a.overwrite,
                         progress=False if a.quiet else None, **kw)
    except KeyboardInterrupt:
        return interrupted()
    except (FileExistsError, ValueError) as e:
        print(f"error: {user_message(e)}", file=sys.stderr)
        return 2
    if not a.quiet:
        c = s["counts"]
        print(f"wrote {s['dataset']} dataset to {s['out']}: train {c['train_normal']} normal + "
              f"{c['train_abnormal']} abnormal ({s['clips']['train']} clips), test {c['test_normal']} "
              f"normal + {c['test_abnormal']} abnormal ({s['clips']['test']} clips), "
              f"{s['n_files']} files, {s['bytes'] / 2**20:.1f} MiB ({s['dtype']}, crops {s['crops']}, dim {s['dim']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
