"""The command line's shape: every flag explained, one set of devices, --output and --out alike."""

from __future__ import annotations

import argparse

from dagan.cli import build_parser
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
