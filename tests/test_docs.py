"""docs/cli.md documents every command, and its generated reference is current.

The reference is the `--help` of each command, generated from the Typer app by
`python -m consentry.clidocs` (as sqlite-utils does with cog): a new command, option or help
text changes it, and this test fails until the file is regenerated."""

from __future__ import annotations

from consentry import clidocs

DOC = clidocs.DOC


def test_the_generated_reference_is_current() -> None:
    current = DOC.read_text(encoding="utf-8")
    assert clidocs.BEGIN in current and clidocs.END in current, "no generated reference"
    assert clidocs.updated(current) == current, (
        "docs/cli.md is stale: run `python -m consentry.clidocs`"
    )


def test_every_command_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    reference = text.split(clidocs.BEGIN, 1)[1]
    paths = [" ".join(path) for path, _, _ in clidocs.commands() if len(path) > 1]
    assert len(paths) > 40  # the lazily loaded commands (gate, keys, signals, ...) included
    missing = [p for p in paths if f"`{p}`" not in reference]
    assert not missing, f"undocumented commands: {missing}"
    for name in ("gate", "datasets", "model", "impact", "keys", "token", "serve", "signals"):
        assert f"### `consentry {name}`" in reference


def test_every_command_says_what_it_does() -> None:
    for path, command, _ in clidocs.commands():
        assert (command.help or "").strip(), f"{' '.join(path)} has no help text"
