"""The README's two commands and its command reference follow the code."""

from __future__ import annotations

import re

from conftest import ROOT


def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_two_commands_at_the_top_and_ci_runs_the_second():
    blocks = re.findall(r"```sh\n(.*?)\n```", readme(), flags=re.S)
    install, tests = blocks[0], blocks[1]
    assert "\n" not in install and "tfm tokenize | tfm encode" in install
    assert "\n" not in tests and "pytest" in tests
    assert tests in (ROOT / ".ci" / "run").read_text()


def test_command_reference_matches_the_help():
    import typer

    from tfm.cli.main import COMMANDS, build_app

    group = typer.main.get_command(build_app())
    section = readme().split("<!-- reference:start -->")[1].split("<!-- reference:end -->")[0]
    rows = dict(re.findall(r"^\| `tfm (\w+)` \| (.*) \|$", section, flags=re.M))
    assert list(rows) == [name for name, _, _ in COMMANDS]
    for name in rows:
        assert rows[name] == group.commands[name].help.strip(), name
