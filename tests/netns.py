"""Network namespaces for tests that open sockets: only loopback, so no traffic leaves 127.0.0.1."""
from __future__ import annotations

import shutil
import subprocess

#: Prefix of a command run in fresh network, pid and /proc namespaces (needs root and unshare).
NS = ["unshare", "--net", "--pid", "--fork", "--mount-proc"]


def namespaces_work() -> bool:
    """True when NS can run here and bring its loopback up."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    try:
        r = subprocess.run(NS + ["sh", "-c", "ip link set lo up"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0
