"""The README's tour works as written, on any day, in a fresh directory.

Every `$ ` line of the console blocks between "## A five-minute tour" and the next section
runs in order, in a new temporary directory holding the files a clone has there (policies/,
examples/), each in its own shell with a deadline. For every command the test compares its
exit status with the README's (0, or the `# exit N` comment that ends the line) and its
`allow (…)` / `deny (…)` lines with the ones the README shows under it. Ids, times and
digests in the README are examples: they differ on every run and are not compared.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import consentry
from support import ROOT

README = ROOT / "README.md"
SRC = str(Path(consentry.__file__).resolve().parent.parent)
EXIT = re.compile(r"#\s*exit (\d+)\s*$")
VERDICT = re.compile(r"^(allow|deny) \([a-z_]+\)$")
#: Lines the tour shows that are about the reader's shell, not consentry.
SHELL_ONLY = ("source ",)
#: The deadline of one command (a gate on a loaded machine is the slowest).
DEADLINE_S = 300


@dataclass
class Step:
    command: str
    status: int
    verdicts: list[str] = field(default_factory=list)


def tour_steps(text: str) -> list[Step]:
    """The tour's commands, each with the exit status and the verdict lines the README
    gives it."""
    tour = text.split("\n## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    steps: list[Step] = []
    for block in re.findall(r"```console\n(.*?)```", tour, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                command = line[2:]
                found = EXIT.search(command)
                steps.append(Step(command, int(found[1]) if found else 0))
            elif steps and VERDICT.match(line):  # a verdict line, not an indented detail
                steps[-1].verdicts.append(line)
    return steps


def test_the_readme_has_a_tour_with_verdicts() -> None:
    steps = tour_steps(README.read_text(encoding="utf-8"))
    assert len(steps) > 20
    assert sum(len(s.verdicts) for s in steps) >= 7
    assert any(s.status == 1 for s in steps) and any(s.status == 2 for s in steps)


@pytest.mark.slow
def test_the_tour_runs_as_written(tmp_path: Path) -> None:
    for part in ("policies", "examples"):
        shutil.copytree(ROOT / part, tmp_path / part)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTRY_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")])
    env["COLUMNS"] = "200"  # no wrapped verdict lines
    for step in tour_steps(README.read_text(encoding="utf-8")):
        if step.command.startswith(SHELL_ONLY):
            continue
        if step.command.startswith("export "):
            name, _, value = step.command.split("#")[0][len("export ") :].strip().partition("=")
            env[name] = " ".join(shlex.split(value))
            continue
        done = subprocess.run(
            ["bash", "-c", step.command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
        )
        said = f"$ {step.command}\n{done.stdout}{done.stderr}"
        assert done.returncode == step.status, said
        verdicts = [line for line in done.stdout.splitlines() if VERDICT.match(line)]
        assert verdicts == step.verdicts, said
