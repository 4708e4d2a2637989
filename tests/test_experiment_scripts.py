"""The GPU scripts in experiments/gpu name presets and variants that exist and overrides that
validate: a typo there would otherwise surface only on the GPU, after its machine has started."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from walkback.config import apply_overrides
from walkback.presets import PRESETS, get_preset

SCRIPTS = sorted((Path(__file__).parent.parent / "experiments").rglob("*.sh"))


def _commands(script: Path) -> list[list[str]]:
    """Each ``walkback compare`` / ``walkback train`` command of ``script`` as words, its
    continuation lines joined and ``${NAME:-default}`` read as its default."""
    text = re.sub(r"\\\n", " ", script.read_text())
    text = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)
    commands = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0]
        if re.search(r"\bwalkback (compare|train)\b", line) and not line.lstrip().startswith("#"):
            words = shlex.split(line[line.index("walkback "):].split("||")[0])
            commands.append(words)
    return commands


def _arms(words: list[str]) -> list[tuple[str, list[str]]]:
    """``(preset, overrides)`` of every preset and ``--variant`` of one command."""
    arms, sets = [], []
    for i, word in enumerate(words):
        if word == "--presets":
            arms += [(name, []) for name in words[i + 1].split(",")]
        elif word in ("--preset", "-p"):
            arms.append((words[i + 1], []))
        elif word == "--set" and "$" not in words[i + 1]:
            sets.append(words[i + 1])
        elif word == "--variant":
            label, preset, *rest = words[i + 1:]
            own = []
            for item in rest:
                if item.startswith("-") or "=" not in item:
                    break
                own.append(item)
            arms.append((preset, own))
    return [(preset, [*sets, *own]) for preset, own in arms]


def test_the_scripts_hold_commands() -> None:
    found = {s.name for s in SCRIPTS if any(_arms(c) for c in _commands(s))}
    assert {"ablate_mnist_tuned.sh", "screen_mnist_tuned.sh", "compare_mnist.sh",
            "mnist_tuned.sh"} <= found


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_arm_of_a_script_is_a_preset_with_valid_overrides(script: Path) -> None:
    for words in _commands(script):
        for preset, overrides in _arms(words):
            assert preset in PRESETS, f"{script.name}: unknown preset {preset!r}"
            apply_overrides(get_preset(preset), [o for o in overrides if "$" not in o])
