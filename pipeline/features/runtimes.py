"""Stage 1's network call on a chosen runtime: torch (fp32 / bf16), onnxruntime, OpenVINO.

Every runner is one call: normalised clips (N, 3, T, H, W) float32 tensor -> (N, D) float32 tensor,
the network's pooled features. Cropping, normalisation and decoding stay in
:class:`pipeline.features.extractor.FeatureExtractor`; only the forward pass changes.

- ``torch``: the module itself, ``channels_last_3d``, bf16 by autocast when asked (CPU: oneDNN's
  bf16 kernels, fast where the CPU has avx512_bf16 or AMX).
- ``onnxruntime`` (``pip install onnxruntime``): the module exported to ONNX once per input shape
  (T, H, W; the batch axis is dynamic), CPU execution provider, fp32 only.
- ``openvino`` (``pip install openvino``): the module converted by ``openvino.convert_model`` once per
  input shape and compiled for the CPU with ``INFERENCE_PRECISION_HINT`` f32 or bf16.

Why per shape: the Inception network pads TensorFlow-style ("SAME"), and the padding of each layer
is computed from its input size, so a traced graph holds the numbers of one size. Frames of one
camera or dataset have one size, so a cache of one entry per shape is small.

``auto`` takes the first installed runtime of :data:`AUTO_ORDER` that runs the asked precision on
this device: the order is the measured one (bench/bench_runtimes.py, bench/RESULTS.md "Stage 1 on
CPU"). On a GPU ``auto`` is torch. The environment variable ``PIPELINE_RUNTIME`` (torch, onnxruntime,
openvino) replaces that choice for ``auto`` (the test suite sets it to torch: tiny inputs, no tracing).
"""
from __future__ import annotations

import importlib.util
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np

RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")
#: ``auto`` on a CPU, fastest first per precision (measured: bench/RESULTS.md "Stage 1 on CPU").
AUTO_ORDER = {"fp32": ("openvino", "onnxruntime", "torch"), "bf16": ("openvino", "torch")}
#: Precisions each runtime runs on a CPU.
RUNTIME_PRECISIONS = {"torch": ("fp32", "bf16"), "onnxruntime": ("fp32",), "openvino": ("fp32", "bf16")}
_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}


def cpu_has_bf16() -> bool:
    """True when this CPU has native bf16 dot products (avx512_bf16 or AMX), where bf16 runs ~2x fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


class RuntimeUnavailable(ValueError):
    """A runtime that is not installed, or cannot run the asked precision / device."""


def installed(runtime: str) -> bool:
    """True when ``runtime`` can be imported here (torch always)."""
    if runtime == "torch":
        return True
    try:
        return importlib.util.find_spec(_MODULES[runtime]) is not None
    except (ImportError, ValueError):
        return False


def resolve_runtime(runtime: Optional[str], precision: str, device_type: str) -> str:
    """The runtime to use: as given (checked), or for ``auto`` / None the first installed one of
    :data:`AUTO_ORDER` (torch on a GPU). Raises RuntimeUnavailable with what to install."""
    runtime = runtime or "auto"
    if runtime not in RUNTIMES:
        raise RuntimeUnavailable(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if runtime == "auto":
        if device_type != "cpu":
            return "torch"
        forced = os.environ.get("PIPELINE_RUNTIME")
        if forced:
            return resolve_runtime(forced, precision, device_type)
        return next(r for r in AUTO_ORDER[precision] if installed(r))
    if runtime != "torch" and device_type != "cpu":
        raise RuntimeUnavailable(f"--runtime {runtime} runs on the CPU only (device {device_type}); "
                                 f"use --runtime torch on a GPU")
    if not installed(runtime):
        raise RuntimeUnavailable(f"--runtime {runtime}: the package {_MODULES[runtime]} is not installed "
                                 f"(pip install {_MODULES[runtime]}, or pip install -e \".[cpu-runtimes]\")")
    if precision not in RUNTIME_PRECISIONS[runtime]:
        raise RuntimeUnavailable(f"--runtime {runtime} runs {'/'.join(RUNTIME_PRECISIONS[runtime])} only, "
                                 f"not --precision {precision}")
    return runtime


Shape = Tuple[int, int, int, int]   # (C, T, H, W) of one clip


class TorchRunner:
    """The torch module: (N, 3, T, H, W) float32 -> (N, D) float32, fp32 or bf16 autocast."""

    takes_uint8 = False

    def __init__(self, model, device, precision: str, channels_last: bool = True):
        self.model, self.device, self.precision, self.channels_last = model, device, precision, channels_last

    def __call__(self, x):
        import torch

        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.precision == "bf16"):
            return self.model(x).float()                         # (N, D)


class _PerShape:
    """A compiled network per clip shape (C, T, H, W), built on first use by ``build``."""

    takes_uint8 = False

    def __init__(self, build: Callable[[Shape], Callable[[np.ndarray], np.ndarray]]):
        self.build = build
        self.cache: Dict[Shape, Callable[[np.ndarray], np.ndarray]] = {}

    def __call__(self, x):
        import torch

        shape = tuple(int(s) for s in x.shape[1:])
        if shape not in self.cache:
            with warnings.catch_warnings():    # the tracer's notes on shape-dependent Python (SAME padding)
                warnings.simplefilter("ignore")
                self.cache[shape] = self.build(shape)
        y = self.cache[shape](np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32))
        return torch.from_numpy(np.asarray(y, dtype=np.float32))  # (N, D)


def export_onnx(model, shape: Shape, path: Path) -> Path:
    """``model`` to an ONNX file for clips of ``shape`` (C, T, H, W); the batch axis is dynamic."""
    import torch

    x = torch.zeros((2,) + tuple(shape))
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(model, (x,), str(path), input_names=["clips"], output_names=["features"],
                          dynamic_axes={"clips": {0: "n"}, "features": {0: "n"}}, opset_version=17,
                          dynamo=False)
    return path


class OnnxRunner(_PerShape):
    """onnxruntime's CPU execution provider on an ONNX export per clip shape (fp32)."""

    def __init__(self, model, threads: int):
        import onnxruntime as ort

        self.tmp = tempfile.TemporaryDirectory(prefix="pipeline-onnx-")

        def build(shape: Shape):
            path = export_onnx(model, shape, Path(self.tmp.name) / ("x".join(map(str, shape)) + ".onnx"))
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            return lambda a: sess.run(None, {"clips": a})[0]

        super().__init__(build)


def openvino_cache_dir() -> Optional[Path]:
    """Where converted OpenVINO models are kept between runs: ``$PIPELINE_OPENVINO_CACHE``, else
    ``~/.cache/pipeline/openvino``; the variable set to an empty string turns the cache off."""
    root = os.environ.get("PIPELINE_OPENVINO_CACHE")
    if root == "":
        return None
    return Path(root) if root else Path.home() / ".cache" / "pipeline" / "openvino"


def module_digest(model) -> str:
    """sha256 of a module's class and every parameter and buffer: the cache key of its graph."""
    import hashlib

    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, t in list(model.state_dict().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(t.detach().cpu().float().numpy()).tobytes())
    return h.hexdigest()[:24]


class OpenVinoRunner(_PerShape):
    """OpenVINO's CPU plugin on the module converted per clip shape, f32 or bf16 inference precision.

    With ``norm`` (mean, std) the compiled graph also does what the extractor does before the network:
    it takes the decoder's uint8 clips (N, T, H, W, 3) and converts, normalises ``(x/255 - mean) / std``
    and transposes them itself (OpenVINO's pre-processing, fused into the graph): on 2 cores that
    saves a third of the time a clip takes outside the network (bench/RESULTS.md, issue 24).
    Converted models are kept in :func:`openvino_cache_dir` (keyed by the weights, the shape, the
    normalisation and OpenVINO's version) and the compiled blobs in its ``compiled/``, so a second
    run on the same camera starts in seconds instead of tracing and compiling again.
    """

    def __init__(self, model, threads: int, precision: str, norm: Optional[Tuple[float, float]] = None):
        import openvino as ov

        core = ov.Core()
        cache = openvino_cache_dir()
        if cache is not None:
            core.set_property({"CACHE_DIR": str(cache / "compiled")})
        config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                  "INFERENCE_NUM_THREADS": str(threads), "PERFORMANCE_HINT": "LATENCY"}
        self.norm = norm
        self.takes_uint8 = norm is not None
        digest = module_digest(model) if cache is not None else None

        def build(shape: Shape):
            om = None
            path = None
            if cache is not None:
                key = f"{digest}-{'x'.join(map(str, shape))}-{norm or 'none'}-{ov.__version__}"
                path = cache / (hashlib_name(key) + ".xml")
                if path.is_file():
                    try:
                        om = core.read_model(str(path))
                    except Exception:      # a damaged cache entry: convert again
                        om = None
            if om is None:
                om = convert_for_openvino(model, shape, norm)
                if path is not None:
                    save_openvino_model(om, path)
            compiled = core.compile_model(om, "CPU", config)
            return lambda a: compiled(a)[0]

        super().__init__(build)

    def __call__(self, x):
        if not self.takes_uint8:
            return super().__call__(x)
        import torch

        shape = (int(x.shape[4]), int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))   # (C, T, H, W)
        if shape not in self.cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.cache[shape] = self.build(shape)
        a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
        y = self.cache[shape](np.ascontiguousarray(a, dtype=np.uint8))
        return torch.from_numpy(np.asarray(y, dtype=np.float32))


def hashlib_name(key: str) -> str:
    """A short file name for a cache key."""
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()[:32]


def convert_for_openvino(model, shape: Shape, norm: Optional[Tuple[float, float]]):
    """``model`` as an OpenVINO model for clips of ``shape`` (C, T, H, W), batch axis dynamic; with
    ``norm`` (mean, std) its input is the decoder's uint8 (N, T, H, W, C), normalised in the graph."""
    import openvino as ov
    import torch

    example = torch.zeros((1,) + tuple(shape))
    with torch.no_grad():
        om = ov.convert_model(model, example_input=example, input=[ov.PartialShape([-1] + list(shape))])
    if norm is None:
        return om
    from openvino.preprocess import PrePostProcessor

    mean, std = norm
    ppp = PrePostProcessor(om)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NDHWC"))
    ppp.input().model().set_layout(ov.Layout("NCDHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).mean(255.0 * mean).scale(255.0 * std)
    return ppp.build()


def save_openvino_model(om, path: Path) -> None:
    """Write a converted model atomically (xml + bin under temporary names, then renamed)."""
    import openvino as ov

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.xml")
    try:
        ov.save_model(om, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(tmp, path)
    except OSError as e:                        # a read-only home: run without the cache
        warnings.warn(f"could not keep the converted OpenVINO model in {path.parent}: {e}")
    finally:
        for t in (tmp, tmp.with_suffix(".bin")):
            if t.exists():
                t.unlink()


def make_runner(runtime: str, model, device, precision: str, channels_last: bool = True,
                threads: Optional[int] = None, norm: Optional[Tuple[float, float]] = None):
    """The runner of a resolved ``runtime`` (see :func:`resolve_runtime`) for an eval-mode ``model``.
    ``norm`` (mean, std): where the runtime can normalise in its graph (OpenVINO), the runner takes
    uint8 clips (N, T, H, W, 3) and says so by ``takes_uint8``; every other runner takes normalised
    float clips (N, 3, T, H, W)."""
    import torch

    threads = threads or torch.get_num_threads() or os.cpu_count() or 1
    if runtime == "torch":
        return TorchRunner(model, device, precision, channels_last)
    model = model.float().to(memory_format=torch.contiguous_format)
    if runtime == "onnxruntime":
        return OnnxRunner(model, threads)
    if runtime == "openvino":
        return OpenVinoRunner(model, threads, precision, norm)
    raise RuntimeUnavailable(f"unknown runtime {runtime!r}")
