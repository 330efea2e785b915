"""The command line: one vocabulary, light --help, flags named in errors, one line and exit 2 for mistakes."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from alexnet.cli import build_parser, flag_for, main
from alexnet.commands import prepare as prepare_command
from alexnet.data import store as store_module
from helpers import make_checkpoint, make_store

PARSER, SUB = build_parser()
COMMANDS = dict(SUB.choices)


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


@pytest.mark.parametrize("argv", [["--help"], ["prepare", "--help"], ["train", "--help"], ["summary", "--help"]])
def test_help_imports_no_torch(argv: list[str]) -> None:
    code = ("import sys\nfrom alexnet.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n") % (argv,)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: alexnet" in result.stdout


def test_a_trained_run_is_always_the_positional_run() -> None:
    takes_a_run = {"eval", "predict", "features", "kernels", "report", "export", "finetune"}
    for name in takes_a_run:
        first = next(a for a in COMMANDS[name]._actions if not a.option_strings and a.dest != "help")
        assert first.dest == "run" and first.metavar == "RUN", name
    for name, parser in COMMANDS.items():
        assert "--checkpoint" not in options(parser) and "--store" not in options(parser) or name == "experiment", name


def test_a_store_is_always_data_and_the_other_words_are_shared() -> None:
    for name, parser in COMMANDS.items():
        opts = options(parser)
        assert "--no-progress" not in opts and "--batch" not in opts, name
        if "--data" in opts:
            assert opts["--data"].metavar == "STORE", name
        if "--patches" in opts:
            assert opts["--patches"].default == "ten", name
    for name in ("prepare", "train", "eval", "ensemble", "features", "finetune", "demo", "codes", "experiment"):
        assert "--quiet" in options(COMMANDS[name]), name
    for name in ("eval", "ensemble", "features", "export"):
        assert "--batch-size" in options(COMMANDS[name]), name


def test_prepare_help_restates_the_store_defaults_faithfully() -> None:
    assert prepare_command.FORMATS == store_module.FORMATS
    assert prepare_command.DEFAULT_SHARD_SIZE == store_module.DEFAULT_SHARD_SIZE
    assert prepare_command.DEFAULT_JPEG_QUALITY == store_module.DEFAULT_JPEG_QUALITY


def test_flag_for_names_options_positionals_and_config_keys() -> None:
    assert flag_for(COMMANDS["eval"], "batch_size") == "--batch-size"
    assert flag_for(COMMANDS["eval"], "run") == "RUN"
    assert flag_for(COMMANDS["train"], "data.store") == "--data"
    assert flag_for(COMMANDS["train"], "optim.lr") == "--set optim.lr"
    assert flag_for(COMMANDS["predict"], "training_store") == "--data"


def test_errors_name_the_flag_the_user_typed(tiny_store, tmp_path: Path, capsys) -> None:
    run = make_checkpoint(tmp_path / "run", tiny_store)
    assert main(["eval", str(run), "--data", str(tiny_store.path), "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alexnet eval: error: --batch-size: must be at least 1") and err.count("\n") == 1
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx"), "--batch-size", "0"]) == 2
    assert "--batch-size: must be at least 1" in capsys.readouterr().err
    assert main(["prepare", str(tmp_path), str(tmp_path / "s"), "--workers", "0"]) == 2
    assert "error: --workers: must be at least 1" in capsys.readouterr().err
    assert main(["train", "--data", str(tiny_store.path), "--out", str(tmp_path / "r"), "--set", "optim.nope=1"]) == 2
    assert "error: --set: unknown key optim.nope" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r2"), "--set", "run.device=cpu"]) == 2
    assert "error: --data: is not set" in capsys.readouterr().err
    other = make_store(tmp_path / "other", classes=5)
    assert main(["eval", str(run), "--data", str(other.path)]) == 2
    assert "does not match the checkpoint" in capsys.readouterr().err
