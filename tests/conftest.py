"""Suite-wide settings.

``--runtime auto`` would pick OpenVINO / onnxruntime where they are installed, which trace the network
once per input shape (seconds each): the suite's many tiny extractions run on torch instead, in this
process and in the CLI subprocesses (they inherit the variable). tests/test_runtimes.py tests the
other runtimes and the auto choice itself.
"""
import os

os.environ.setdefault("PIPELINE_RUNTIME", "torch")
# Converted OpenVINO models go to a folder of this test session, never to the user's ~/.cache.
if "PIPELINE_OPENVINO_CACHE" not in os.environ:
    import tempfile
    os.environ["PIPELINE_OPENVINO_CACHE"] = tempfile.mkdtemp(prefix="pipeline-test-openvino-")
