"""Run tests/browser_driver.py in a network namespace of its own (loopback only), or say why not.

A browser phones home (updates, safe browsing, DNS); ``unshare -n`` + ``ip link set lo up`` keeps
it and the test's static server on 127.0.0.1. Needs root (or user namespaces), Debian's
``chromium`` and the ``playwright`` package (its driver only; the system browser is used).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

DRIVER = Path(__file__).with_name("browser_driver.py")
CHROMIUM = os.environ.get("REVIEW_CHROMIUM", "/usr/bin/chromium")


def unavailable() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    for tool in ("unshare", "ip"):
        if not shutil.which(tool):
            return f"no '{tool}' command to isolate the browser from the network"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace (unshare -n: {probe.stderr.strip() or probe.returncode})"
    return None


def run_browser(spec: dict, workdir: Path, timeout: float = 240) -> dict:
    """Run the driver on ``spec`` inside a loopback-only network namespace; returns its result."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = workdir / "spec.json", workdir / "result.json"
    spec_path.write_text(json.dumps(spec))
    inner = " ".join(shlex.quote(str(a)) for a in (sys.executable, DRIVER, spec_path, result_path))
    proc = subprocess.run(["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {inner}"],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not result_path.exists():
        raise RuntimeError(f"browser driver failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(result_path.read_text())
