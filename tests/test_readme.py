"""Every code block of the README runs.

Python blocks run as written, each in a fresh interpreter, reading CIFAR-10
from a small TFDS directory (1,000 images per split, through
`TFDS_DATA_DIR`). Each `python scripts/...` command of a bash block runs as
written with these substitutions, so that the suite stays short:
`~/tensorflow_datasets` becomes that small directory, `runs/` a temporary
folder, `ROOT` a small labelled image folder, and a pretraining command gets
`--epochs=1 --steps_per_epoch=2 --batch_size=16 --knn_every=0` appended
(the flags override the recipe's budget and skip the kNN monitor, nothing
else). The two set-up commands
(install and quickstart, install and tests) are checked by
`tests/test_repository.py` and CI; the quickstart's script steps run here
too.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_directcopy.data import offline as offline_data

REPOSITORY = Path(__file__).resolve().parent.parent
README = (REPOSITORY / "README.md").read_text()
SHARED_CIFAR10 = REPOSITORY.parent / "shared" / "data" / "cifar10"
PRETRAIN_BUDGET = ["--epochs=1", "--steps_per_epoch=2", "--batch_size=16", "--knn_every=0"]


def code_blocks(language):
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.M | re.S)


def script_commands():
    """Each `python scripts/X.py ...` command of the bash blocks, as argument lists."""
    commands = []
    for block in code_blocks("bash"):
        for line in block.splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if len(words) >= 2 and words[0].endswith("python") and words[1].startswith("scripts/"):
                    commands.append(words[1:])
    return commands


@pytest.fixture(scope="module")
def small_cifar10(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tfds")
    offline_data.prepare_cifar10(str(SHARED_CIFAR10), str(directory), max_examples_per_split=1000)
    return directory


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory):
    """ROOT/train/<class>/ and ROOT/val/<class>/: 24 and 8 PNG images of two classes."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("images")
    images = np.random.default_rng(0).integers(0, 256, (64, 40, 40, 3), dtype=np.uint8)
    for index, image in enumerate(images):
        split = "train" if index % 4 else "val"
        folder = root / split / ("cats" if index % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index}.png").write_bytes(tf.io.encode_png(image).numpy())
    return root


def run(arguments, cwd, data_dir, timeout=600):
    environment = {**os.environ, "TFDS_DATA_DIR": str(data_dir), "CUDA_VISIBLE_DEVICES": "",
                   "HF_HUB_OFFLINE": "1"}
    return subprocess.run(arguments, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)


def test_the_readme_has_python_and_script_blocks():
    assert len(code_blocks("python")) >= 2
    scripts = {command[0] for command in script_commands()}
    assert {"scripts/pretrain.py", "scripts/evaluate.py", "scripts/finetune.py", "scripts/prepare_data.py"} <= scripts
    # The first snippet that loads a pretrained encoder comes early.
    assert README.index("kdc.load_pretrained(") < 2048


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(code_blocks("python"))))
def test_python_block_runs(index, small_cifar10, tmp_path):
    block = code_blocks("python")[index]
    result = run([sys.executable, "-c", block], cwd=tmp_path, data_dir=small_cifar10)
    assert result.returncode == 0, f"{block}\n{result.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("command", script_commands(), ids=lambda command: " ".join(command)[:80])
def test_script_command_runs(command, small_cifar10, labelled_folder, tmp_path):
    arguments = []
    for argument in command:
        argument = argument.replace("~/tensorflow_datasets", str(small_cifar10))
        argument = argument.replace("folder:ROOT", f"folder:{labelled_folder}")
        if argument.startswith("--output_dir=runs/"):
            argument = f"--output_dir={tmp_path / argument.split('=', 1)[1]}"
        arguments.append(argument)
    if arguments[0] == "scripts/prepare_data.py" and not any(a.startswith("--data_dir") for a in arguments):
        arguments.append(f"--data_dir={tmp_path / 'prepared'}")  # not the user's ~/tensorflow_datasets
    if arguments[0] == "scripts/pretrain.py":
        arguments += PRETRAIN_BUDGET
    result = run([sys.executable, *arguments], cwd=REPOSITORY, data_dir=small_cifar10)
    assert result.returncode == 0, f"{' '.join(arguments)}\n{result.stderr[-3000:]}"
