"""The README's commands are the ones CI and users run."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    test_command = ci_lines[-1]
    assert "pytest" in test_command
    assert f"\n{test_command}\n" in readme


def test_quickstart_command_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    assert (
        "pip install -c constraints.txt -e . && .venv/bin/python scripts/prepare_data.py && "
        ".venv/bin/python scripts/pretrain.py --config=quickstart" in readme
    )
