"""What every command line shares: user errors become one clear line on stderr and exit code 2."""
from __future__ import annotations

import sys
from typing import Callable

#: Errors that mean bad input or a bad request (DataError is a ValueError), not a bug: no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (FileExistsError, FileNotFoundError, ValueError)


def run_cli(fn: Callable[[], object], errors: tuple[type[BaseException], ...] = USER_ERRORS) -> int:
    """Run ``fn``; 0 when it returns, 2 (after printing ``error: ...``) when it raises one of ``errors``."""
    try:
        fn()
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
