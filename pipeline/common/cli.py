"""What every command line shares: user errors become one clear line on stderr and exit code 2,
Ctrl-C becomes one line and exit code 130, progress bars appear only on a terminal (in a log:
plain lines with the same numbers)."""
from __future__ import annotations

import argparse
import re
import sys
from typing import Callable, Iterable

#: Errors that mean bad input or a bad request (DataError is a ValueError), not a bug: no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (FileExistsError, FileNotFoundError, PermissionError, ValueError)

#: Exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130

#: Where numpy's or torch's text about pickled data starts: it recommends ``allow_pickle=True`` or
#: ``weights_only=False``, i.e. executing whatever the file contains. Never passed on as advice.
_PICKLE_TEXT = re.compile(r"\(?\s*(\w+(Error|Exception):\s*)?"
                          r"(Weights only load failed|Object arrays cannot be loaded|[^.;:(]*allow_pickle"
                          r"|[^.;:(]*weights_only)")
PICKLE_REFUSED = "it holds pickled Python objects, which are refused (loading them could run code)"


def user_message(e: BaseException | str) -> str:
    """One line for the user: the error's first line, with library advice to load pickles replaced
    by what it means."""
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    if not lines:
        return e.__class__.__name__ if isinstance(e, BaseException) else ""
    joined = " ".join(lines)
    m = _PICKLE_TEXT.search(joined)
    if m:
        head = joined[:m.start()].rstrip(" :(")
        g = re.search(r"Unsupported global: GLOBAL (\S+)", joined)
        if g:
            detail = f"{PICKLE_REFUSED}: {g.group(1)}"
        elif "allow_pickle" in joined:
            detail = PICKLE_REFUSED
        else:           # torch's safe unpickler met something that is no checkpoint at all
            detail = "the file is damaged or not in the expected format"
        return f"{head}: {detail}" if head else detail
    return lines[0]


def interrupted() -> int:
    """Ctrl-C: one line, exit code 130. Atomic writes leave finished files whole; rerun to resume."""
    print("\ninterrupted (Ctrl-C); files written so far are complete, rerun to resume where possible",
          file=sys.stderr)
    return EXIT_INTERRUPTED


def run_cli(fn: Callable[[], object], errors: tuple[type[BaseException], ...] = USER_ERRORS) -> int:
    """Run ``fn``; 0 when it returns, 2 (after printing ``error: ...``) when it raises one of ``errors``,
    130 on Ctrl-C."""
    try:
        fn()
    except KeyboardInterrupt:
        return interrupted()
    except errors as e:
        if caused_by_interrupt(e):
            return interrupted()
        print(f"error: {user_message(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if caused_by_interrupt(e):       # e.g. a clean-up step that failed while Ctrl-C unwound
            return interrupted()
        raise
    return 0


def caused_by_interrupt(e: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in the exception's cause or context chain."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def bars_enabled(quiet: bool = False, stream=None) -> bool:
    """Progress bars only for a person watching: not with ``--quiet``, not when stderr is a file or pipe."""
    stream = sys.stderr if stream is None else stream
    return not quiet and hasattr(stream, "isatty") and stream.isatty()


def progress(iterable: Iterable, quiet: bool = False, **kw):
    """``iterable`` with progress: a tqdm bar on a terminal, plain lines in a log (:func:`progress_bar`)."""
    return progress_bar(quiet or kw.pop("disable", False), iterable=iterable, **kw)


def progress_bar(quiet: bool = False, stream=None, every_pct: float = 10.0, every_s: float = 30.0, **kw):
    """The one progress display of every command. On a terminal: ``tqdm(**kw)``. Redirected to a
    file or pipe: a :class:`LogProgress`, which prints a plain line (no carriage return, no cursor
    codes) with the same numbers every ``every_pct`` percent or ``every_s`` seconds; bars with
    ``leave=False`` (per-video bars under an overall one) print nothing there. ``quiet``: nothing."""
    stream = sys.stderr if stream is None else stream
    if bars_enabled(quiet, stream):
        from tqdm import tqdm
        return tqdm(file=stream, **kw)
    return LogProgress(quiet=quiet or kw.get("leave") is False, stream=stream, every_pct=every_pct,
                       every_s=every_s, iterable=kw.get("iterable"), total=kw.get("total"),
                       desc=kw.get("desc"), unit=kw.get("unit", "it"))


class LogProgress:
    """What tqdm offers the commands (iterate, ``update``, ``set_postfix``, ``close``), written as
    plain lines for a log: ``desc: n/total unit (pct%), rate unit/s, elapsed s[, postfix]``."""

    def __init__(self, quiet: bool = False, stream=None, every_pct: float = 10.0, every_s: float = 30.0,
                 iterable: Iterable | None = None, total: float | None = None, desc: str | None = None,
                 unit: str = "it"):
        import time

        self.quiet, self.stream = quiet, sys.stderr if stream is None else stream
        self.every_pct, self.every_s = every_pct, every_s
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit = total, desc, unit
        self.n, self.postfix, self.closed, self.printed = 0, "", False, (0, "")
        self.t0 = self.t_last = time.time()
        self.pct_last = 0.0

    def __iter__(self):
        for x in self.iterable:
            yield x
            self.update(1)
        self.close()

    def __len__(self):
        return len(self.iterable) if self.iterable is not None else int(self.total or 0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kw) -> None:
        items = dict(ordered_dict or {}, **kw)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc

    def update(self, n: float = 1) -> None:
        import time

        self.n += n
        now = time.time()
        pct = 100.0 * self.n / self.total if self.total else None
        if (pct is not None and pct - self.pct_last >= self.every_pct) or now - self.t_last >= self.every_s:
            self._line(now)

    def line(self, now: float | None = None) -> str:
        import time

        now = time.time() if now is None else now
        elapsed = now - self.t0
        n = f"{self.n:g}/{self.total:g}" if self.total else f"{self.n:g}"
        pct = f" ({100.0 * self.n / self.total:.0f}%)" if self.total else ""
        rate = f", {self.n / elapsed:.3g} {self.unit}/s" if elapsed > 0 else ""
        return (f"{self.desc + ': ' if self.desc else ''}{n} {self.unit}{pct}{rate}, {elapsed:.0f} s"
                + (f", {self.postfix}" if self.postfix else ""))

    def _line(self, now: float) -> None:
        self.t_last, self.printed = now, (self.n, self.postfix)
        if self.total:
            self.pct_last = 100.0 * self.n / self.total
        if not self.quiet:
            print(self.line(now), file=self.stream, flush=True)

    def close(self) -> None:
        import time

        if self.closed:
            return
        self.closed = True
        if (self.n, self.postfix) != self.printed:
            self._line(time.time())         # the final numbers, once


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with every flag's default shown once: not for switches (``store_true``/``store_false``,
    whose help says what they do), not when there is none, not when the help already gives it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default in (None, argparse.SUPPRESS) or isinstance(action.default, bool)
                or action.nargs == 0 or "default" in text.lower() or "%(default)" in text):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


#: What ``--device`` accepts, as said in its errors.
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"


def check_device(device: str | None, flag: str = "--device") -> None:
    """Raise ValueError (one line) unless ``device`` is one of DEVICE_CHOICES and, for a CUDA
    device, this machine has that GPU. Called before any work or output, so a refused run leaves
    nothing behind. None and "" (the command's default) pass."""
    if device in (None, ""):
        return
    name, colon, index = str(device).partition(":")
    if name in ("auto", "cpu") and not colon:
        return
    if name != "cuda" or (colon and not index.isdigit()):
        raise ValueError(f"{flag} {device}: not a device; choose one of {DEVICE_CHOICES} (N: a GPU index)")
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"{flag} {device}: no CUDA GPU is visible here (torch.cuda.is_available() is False"
                         + ("" if torch.version.cuda else "; this torch is a CPU-only build")
                         + "); use --device cpu (choices: " + DEVICE_CHOICES + ")")
    if index and int(index) >= torch.cuda.device_count():
        raise ValueError(f"{flag} {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                         f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
