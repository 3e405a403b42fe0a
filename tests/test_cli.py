"""The command line's shape: every flag explained, one set of devices, --output and --out alike."""

from __future__ import annotations

import argparse

import pytest

from dagan.cli import build_parser, main
from dagan.config import DEVICES


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_flag_of_every_command_has_help():
    missing = [
        f"{name} {action.option_strings[0]}"
        for name, command in _commands().items()
        for action in command._actions
        if action.option_strings and not action.help
    ]
    assert missing == []


def test_every_device_flag_offers_the_same_devices():
    offered = {
        name: tuple(action.choices)
        for name, command in _commands().items()
        for action in command._actions
        if "--device" in action.option_strings
    }
    assert len(offered) >= 7 and set(offered.values()) == {DEVICES}


def test_out_and_output_name_the_same_folder_wherever_either_is_taken():
    for name, command in _commands().items():
        flags = {flag: action.dest for action in command._actions for flag in action.option_strings}
        if "--out" in flags or "--output" in flags:
            assert flags.get("--out") == flags.get("--output"), name


REQUIRED = {
    "train": (["--config", "c.yaml", "--data", "d", "--out", "o"], "TrainOptions"),
    "train-depth": (["--data", "d", "--out", "o"], "DepthTrainOptions"),
    "generate": (["--checkpoint", "c", "--out", "o", "--pairs", "p.csv"], "GenerateOptions"),
    "evaluate": (["--generated", "g", "--out", "o"], "EvaluateOptions"),
    "animate": (["--source", "s.png", "--driving", "d.mp4"], "AnimateOptions"),
}


def test_flags_are_generated_from_the_options_and_leave_their_defaults_to_them():
    import dataclasses

    from dagan import options as options_module
    from dagan.cli import _options, build_parser

    parser = build_parser()
    commands = _commands()
    for command, (argv, class_name) in REQUIRED.items():
        options_class = getattr(options_module, class_name)
        built = _options(options_class, parser.parse_args([command, *argv]))
        flagged = [f for f in dataclasses.fields(options_class) if "flag" in f.metadata]
        dests = {action.dest for action in commands[command]._actions}
        for spec in flagged:
            if spec.name != "inference":
                assert spec.name in dests, (command, spec.name)
            given = spec.name in {"config", "data", "out", "checkpoint", "pairs_csv", "generated", "source", "driving"}
            default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
            if not given and default is not dataclasses.MISSING:
                assert getattr(built, spec.name) == default, (command, spec.name)


def test_given_flags_reach_the_options_with_their_types():
    from pathlib import Path

    from dagan.cli import _options, build_parser
    from dagan.options import AnimateOptions, DepthTrainOptions, EvaluateOptions, GenerateOptions

    parser = build_parser()
    argv = ["train-depth", "--data", "d", "--out", "o", "--learning-rate", "3e-4", "--intrinsics", "1,1,0.5,0.5"]
    depth = _options(DepthTrainOptions, parser.parse_args(argv))
    assert depth.learning_rate == 3e-4 and depth.intrinsics == (1.0, 1.0, 0.5, 0.5) and depth.data == Path("d")
    assert depth.translation_scale == DepthTrainOptions.translation_scale
    argv = ["animate", "--source", "a.png", "b.png", "--driving", "d.mp4", "--output", "frames/", "--absolute",
            "--no-adapt-scale", "--precision", "bf16", "--cpu-workers", "2", "--side-by-side"]  # fmt: skip
    animate = _options(AnimateOptions, parser.parse_args(argv))
    assert animate.source == (Path("a.png"), Path("b.png")) and animate.output == "frames/"  # the slash means a folder
    assert not animate.relative and not animate.adapt_scale and animate.side_by_side_output
    assert animate.inference.precision == "bf16" and animate.inference.cpu_workers == 2 and animate.inference.fuse
    assert set(animate.files_arguments()) >= {"relative", "inference", "smooth", "overwrite"}
    assert "crop" not in animate.files_arguments() and "source" not in animate.files_arguments()
    generate = _options(GenerateOptions, parser.parse_args(["generate", *REQUIRED["generate"][0], "--compile"]))
    assert generate.pairs_csv == Path("p.csv") and generate.inference.compile and generate.mode == "cross"
    evaluate = _options(EvaluateOptions, parser.parse_args(["evaluate", "--generated", "g", "--out", "o", "--metrics",
                                                            "psnr, l1,"]))  # fmt: skip
    assert evaluate.metrics == ("psnr", "l1")
    for blank in ("", " "):  # as before the flags were generated: an empty list is refused, not evaluated
        with pytest.raises(SystemExit) as refused:
            main(["evaluate", "--generated", "g", "--out", "o", "--metrics", blank])
        assert refused.value.code == 2


def test_help_shows_each_default_from_its_dataclass():
    from dagan.options import DepthTrainOptions, TrainOptions

    helps = {
        (name, flag): action.help
        for name, command in _commands().items()
        for action in command._actions
        for flag in action.option_strings
    }
    assert f"(default: {TrainOptions.checkpoint_every})" in helps["train", "--checkpoint-every"]
    assert f"(default: {DepthTrainOptions.learning_rate:g})" in helps["train-depth", "--learning-rate"]
    assert "(default: psnr,ssim," in helps["evaluate", "--metrics"]
    assert helps["crop", "--detect-every"] == helps["animate", "--detect-every"]  # one definition, two commands


def test_only_animating_commands_share_one_heap_arena(monkeypatch, tmp_path, capsys):
    import dagan.cli
    from dagan.pipelines import memory

    calls = []
    monkeypatch.setattr(dagan.cli, "limit_heap_arenas", lambda: calls.append(True))
    missing = str(tmp_path / "missing.png")
    animate = ["animate", "--source", missing, "--driving", missing, "--checkpoint", missing, "--output", "o.mp4"]
    assert main(animate) == 2
    assert calls == [True]
    assert main(["depth", "--input", missing, "--weights", missing, "--out", str(tmp_path / "d")]) == 2
    assert calls == [True]  # training, depth and the rest keep glibc's default
    animating = {c.name for c in dagan.cli.COMMANDS if c.animates}
    assert animating == {"demo", "animate", "generate", "app"}
    memory.limit_heap_arenas(memory.HEAP_ARENAS)  # harmless on glibc and elsewhere
    memory.return_freed_memory()
    capsys.readouterr()


def test_only_commands_that_repeat_network_passes_keep_freed_memory_in_the_heap(monkeypatch, tmp_path, capsys):
    import dagan.cli

    calls = []
    monkeypatch.setattr(dagan.cli, "keep_freed_memory", lambda: calls.append(True))
    missing = str(tmp_path / "missing")
    assert main(["train", "--config", missing, "--data", missing, "--out", str(tmp_path / "run")]) == 2
    assert calls == [True]
    assert main(["depth", "--input", missing, "--weights", missing, "--out", str(tmp_path / "d")]) == 2
    assert calls == [True]
    assert main(["evaluate", "--generated", missing, "--out", str(tmp_path / "report")]) == 2
    assert calls == [True, True]
    assert {c.name for c in dagan.cli.COMMANDS if c.repeats_passes} == {"train", "train-depth", "evaluate"}
    assert {c.name for c in dagan.cli.COMMANDS if c.trains} == {"train", "train-depth"}
    capsys.readouterr()
