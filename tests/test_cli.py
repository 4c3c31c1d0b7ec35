"""What the commands share (pipeline.common.cli): --help, one-line errors, Ctrl-C, progress bars."""
from __future__ import annotations

import argparse
import io

import pytest

from pipeline.common import cli
from pipeline import demo
from pipeline import detect
from pipeline import evaluate
from pipeline import study
from pipeline.synth import cli as synth
from pipeline import train
from pipeline import watch

PARSERS = {"train": train.build_parser, "evaluate": evaluate.build_parser, "detect": detect.build_parser,
           "demo": demo.build_parser, "study": study.build_parser, "watch": watch.build_parser}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_flag_has_help_and_its_default_once(name):
    p = PARSERS[name]()
    fmt = p._get_formatter()
    for a in p._actions:
        if isinstance(a, argparse._HelpAction) or not a.option_strings or a.help == argparse.SUPPRESS:
            continue
        assert a.help, f"{name} {a.option_strings[0]} has no help"
        text = fmt._expand_help(a)
        assert text.lower().count("default") <= 1, f"{name} {a.option_strings[0]}: {text!r}"
        if a.default not in (None, False, True) and a.nargs != 0:
            assert "default" in text.lower(), f"{name} {a.option_strings[0]} does not show its default"
    help_text = p.format_help()
    assert "(default: True)" not in help_text and "(default: False)" not in help_text


def test_synth_help(capsys):
    with pytest.raises(SystemExit):
        synth.main(["--help"])
    text = capsys.readouterr().out
    assert "(default: True)" not in text and text.count("the preset's") >= 8


def test_switches_do_not_claim_a_default():
    text = train.build_parser().format_help() + detect.build_parser().format_help()
    for flag in ("--no-bc", "--no-bcg", "--no-plot", "--standardize", "--quiet"):
        line = text.split(flag, 1)[1].split("\n  -", 1)[0]
        assert "default" not in line, (flag, line)


def test_user_message_drops_unsafe_library_advice():
    torch_text = ("Weights only load failed. This file can still be loaded, to do so you have two options. \n"
                  "\t(1) Re-running `torch.load` with `weights_only` set to `False` will likely succeed\n"
                  "\tWeightsUnpickler error: Unsupported global: GLOBAL pathlib.PosixPath was not an allowed global")
    msg = cli.user_message(ValueError(f"run/x.pt: not a readable checkpoint (UnpicklingError: {torch_text})"))
    assert msg == f"run/x.pt: not a readable checkpoint: {cli.PICKLE_REFUSED}: pathlib.PosixPath"
    msg = cli.user_message(ValueError("f.npy: cannot read feature file (ValueError: Object arrays cannot be "
                                      "loaded when allow_pickle=False)"))
    assert msg == f"f.npy: cannot read feature file: {cli.PICKLE_REFUSED}"
    assert cli.user_message(ValueError("a\nb\nc")) == "a"


def test_run_cli_ctrl_c_and_user_errors(capsys):
    def stop():
        raise KeyboardInterrupt
    assert cli.run_cli(stop) == 130
    assert "interrupted" in capsys.readouterr().err

    def bad():
        raise PermissionError("out/: cannot write here")
    assert cli.run_cli(bad) == 2
    assert capsys.readouterr().err == "error: out/: cannot write here\n"


def test_bars_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    assert cli.bars_enabled(False, Tty()) and not cli.bars_enabled(True, Tty())
    assert not cli.bars_enabled(False, io.StringIO())


def test_an_error_raised_while_ctrl_c_unwinds_is_still_an_interrupt(capsys):
    from pipeline.common.cli import EXIT_INTERRUPTED, run_cli

    def job():
        try:
            raise KeyboardInterrupt
        finally:
            raise FileNotFoundError("a temp file already gone")    # a clean-up step failing mid-unwind

    assert run_cli(job) == EXIT_INTERRUPTED
    assert "interrupted" in capsys.readouterr().err

    def other():
        raise RuntimeError("a real bug keeps its traceback")
    with pytest.raises(RuntimeError):
        run_cli(other)
