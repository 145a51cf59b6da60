"""README.md stays true: its model table is the code's, and its commands are the ones CI runs."""

from pathlib import Path

from litvit.cli import main
from litvit.model_table import model_rows

ROOT = Path(__file__).parents[1]


def readme_table():
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- model-table:start -->")[1].split("<!-- model-table:end -->")[0].strip().splitlines()
    cols = [c.strip() for c in block[0].strip("|").split("|")]
    return [dict(zip(cols, (c.strip() for c in line.strip("|").split("|")))) for line in block[2:]]


def test_readme_model_table_matches_code():
    readme = readme_table()
    computed = model_rows(measured=False)
    assert len(readme) == len(computed)
    for ours, row in zip(computed, readme):
        for col, value in ours.items():
            assert row[col] == str(value), (row["model"], col)


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]"' in readme and 'pip install -e ".[dev]"' in ci
    assert "\npytest -n auto " in readme and "pytest -n auto -q" in ci


def test_cli_models_prints_the_table(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "| LITv2-S | litv2_s | 224 | 27.84 | 3.73 |" in out


def test_readme_and_docs_point_only_to_files_in_the_repository():
    """A newcomer with a plain clone can follow every path the README and the docs name."""
    import re

    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)\)", text):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which is not in the repository"
        assert "spec/ARCHITECTURE.md" not in text, f"{page.name} points to the shared spec, not in a clone"


def test_readme_says_how_to_set_up_and_every_table_model_is_registered():
    import timm

    import litvit  # noqa: F401

    readme = (ROOT / "README.md").read_text()
    assert "python3 -m venv" in readme and "GB" in readme and "minutes" in readme
    for row in readme_table():
        assert timm.is_model(row["timm name"].split(" ")[0]), row
    assert "litv2_nano" in [row["timm name"] for row in readme_table()]


def test_every_litvit_command_in_a_code_block_parses():
    """A command copied from the README or a docs page is accepted: no renamed option or sub-command left behind."""
    import contextlib
    import io
    import re
    import shlex

    from litvit.cli import build_parser

    checked = 0
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```[a-z]*\n(.*?)```", page.read_text(), re.S):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                line = re.sub(r"^(\w+=\S+\s+)+", "", line.strip().removeprefix("$ "))  # env assignments
                if not line.startswith("litvit "):
                    continue
                argv = shlex.split(line, comments=True)[1:]
                for shell in ("|", ">", "&&", ";", "2>&1", "&"):
                    argv = argv[: argv.index(shell)] if shell in argv else argv
                stderr = io.StringIO()
                try:
                    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                        build_parser().parse_args(argv)
                except SystemExit as exc:
                    assert not exc.code, f"{page.name}: `{line}` -> {stderr.getvalue().strip()}"
                checked += 1
    assert checked >= 40, checked
