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
    """One line installs, prepares CIFAR-10, fine-tunes the shipped encoder
    on a labelled subset (what users come for, so it leads), then pretrains."""
    readme = (ROOT / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if "scripts/prepare_data.py &&" in line]
    steps = [step.strip() for step in line.split("&&")]
    assert steps[0] == "python3 -m venv .venv"
    assert steps[1] == ".venv/bin/pip install -c constraints.txt -e ."
    assert steps[2] == ".venv/bin/python scripts/prepare_data.py"
    assert steps[3].startswith(".venv/bin/python scripts/finetune.py --preset=cifar10 --labels_fraction=")
    assert steps[4].startswith(".venv/bin/python scripts/pretrain.py --config=quickstart ")
    assert len(steps) == 5


def test_readme_preset_table_names_every_preset_and_where_its_weights_live():
    """One README row per registry preset, with its alias, recipe and Hub
    repository; a row says "not trained yet" exactly when the registry has
    no weights and is not in training, and "bundled" exactly when its
    weights ship in zoo/."""
    from keras_directcopy.presets import zoo

    rows = {
        line.split("|")[1].strip(" `"): line
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| `directcopy_")
    }
    presets = {p["name"]: zoo.get_preset(p["name"]) for p in zoo.list_pretrained()}
    assert set(rows) == set(presets)
    for name, preset in presets.items():
        row = rows[name]
        assert all(f"`{alias}`" in row for alias in preset["aliases"])
        assert f"`{preset['hub']['repo_id']}`" in row
        config = preset["train_command"].split("--config=")[1].split()[0]
        assert f"`--config={config}`, {preset['epochs']} epochs" in row
        in_training = (ROOT / "zoo" / name / "resume").is_dir()
        assert ("not trained yet" in row) == (not preset["weights"]["sha256"] and not in_training)
        assert ("bundled" in row) == bool(preset["weights"].get("bundled"))
