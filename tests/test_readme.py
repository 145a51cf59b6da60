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
    assert "\npytest" in readme and "pytest" in ci


def test_cli_models_prints_the_table(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "| LITv2-S | litv2_s | 224 | 27.84 | 3.73 |" in out
