"""Stub of torchvision.ops for the GPU benchmark (RoIAlign is imported, never used)."""


class RoIAlign:  # pragma: no cover - only constructed by detection heads we do not build
    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision is not installed: RoIAlign unavailable (benchmark shim)")
