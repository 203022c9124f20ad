"""Labelled image folders (`root/train/<class>/`, `root/val/<class>/`) as a
dataset: classes, splits, RGB decoding, the measured default image size, each
error, and evaluate.py / pretrain.py / finetune.py end to end on a small tree."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_directcopy.data import datasets as data
from keras_directcopy.data.augment import TwoViewAugmenter, get_preset

REPO_ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("cat", "dog", "fox")
# Per class, one file of each spelling; mixed sizes whose median shorter side is 20.
TRAIN_FILES = (("a.JPG", 20, 24), ("b.jpeg", 18, 30), ("c.png", 22, 20), ("d.Png", 26, 21))
VAL_FILES = (("e.jpg", 20, 20), ("f.PNG", 24, 22))


def write_image(path, height, width, value, channels=3):
    """Writes a solid image; `channels=1` writes a grayscale file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = tf.cast(tf.fill((height, width, channels), value), tf.uint8)
    encode = tf.io.encode_png if path.suffix.lower() == ".png" else tf.io.encode_jpeg
    path.write_bytes(encode(pixels).numpy())


def make_tree(root, evaluation="val"):
    """3 classes x 4 train and 2 evaluation images; the first is grayscale."""
    for label, name in enumerate(CLASSES):
        for split, files in (("train", TRAIN_FILES), (evaluation, VAL_FILES)):
            for index, (file, height, width) in enumerate(files):
                channels = 1 if (label, split, index) == (0, "train", 0) else 3
                write_image(root / split / name / file, height, width, 60 * label + 10, channels)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "imagenette")


def test_labelled_folder_spec_and_splits(tree, capsys):
    spec = data.get_dataset_spec(f"folder:{tree}")
    assert spec.labelled and spec.class_names == CLASSES and spec.num_classes == 3
    assert (spec.pretrain_split, spec.train_split, spec.test_split) == ("train", "train", "val")
    # The median shorter side of the 12 training images (18, 20, 20, 21 per class).
    assert spec.image_size == 20
    assert "Image size 20 px" in capsys.readouterr().out
    assert data.num_examples(f"folder:{tree}", None, "train") == 12
    assert data.num_examples(f"folder:{tree}", None, "val") == 6
    assert data.num_examples(f"folder:{tree}", None, "train[:5]") == 5
    examples = list(data.load_split(f"folder:{tree}", None, "train"))
    assert [int(label) for _, label in examples] == [0] * 4 + [1] * 4 + [2] * 4
    assert {tuple(image.shape) for image, _ in examples} == {
        (height, width, 3) for _, height, width in TRAIN_FILES
    }
    gray = examples[0][0].numpy()  # train/cat/a.JPG, written with one channel
    assert gray.dtype == np.uint8 and np.all(gray[..., 0] == gray[..., 1])
    # The labels follow the class folders: each class has its own pixel value.
    for image, label in examples:
        assert abs(float(np.mean(image)) - (60 * int(label) + 10)) < 3
    # --image_size overrides the measured size.
    assert data.get_dataset_spec(f"folder:{tree}", image_size=32).image_size == 32


def test_labelled_folder_pipelines(tree):
    images, labels = next(iter(data.evaluation_dataset(f"folder:{tree}", None, "test", batch_size=6)))
    assert images.shape == (6, 20, 20, 3) and images.dtype == tf.uint8
    assert labels.numpy().tolist() == [0, 0, 1, 1, 2, 2]
    augmenter = TwoViewAugmenter(get_preset("folder", image_size=16))
    batch = next(iter(data.pretrain_dataset(f"folder:{tree}", None, 12, augmenter, seed=0)))
    assert batch.shape == (12, 2, 16, 16, 3)
    # The pretraining files are shuffled before decoding, not read class by class.
    order = [
        int(label) for _, label in data.load_split(f"folder:{tree}", None, "train", shuffle_seed=0)
    ]
    assert sorted(order) == [0] * 4 + [1] * 4 + [2] * 4 and order != sorted(order)


def test_the_pipelines_take_a_spec_and_a_name_is_resolved_once(tree, monkeypatch):
    """An entry point resolves the name once and passes the spec down: the
    pipelines then neither resolve it again nor list the class folders; a
    name given to `evaluation_dataset` has its class folders listed once."""
    spec = data.get_dataset_spec(f"folder:{tree}")
    listed = []
    folder_classes = data.folder_classes
    monkeypatch.setattr(data, "folder_classes", lambda folder: listed.append(folder) or folder_classes(folder))
    resolve = data.get_dataset_spec

    def refuse(*args, **kwargs):
        raise AssertionError("a spec was resolved again")

    monkeypatch.setattr(data, "get_dataset_spec", refuse)
    data.ensure_prepared(spec, None)
    assert data.num_examples(spec, None, "val") == 6
    images, labels = next(iter(data.evaluation_dataset(spec, None, "test", batch_size=6)))
    assert images.shape == (6, 20, 20, 3) and labels.numpy().tolist() == [0, 0, 1, 1, 2, 2]
    augmenter = TwoViewAugmenter(get_preset("folder", image_size=16))
    assert next(iter(data.pretrain_dataset(spec, None, 12, augmenter, seed=0))).shape == (12, 2, 16, 16, 3)
    assert next(iter(data.supervised_train_dataset(spec, None, "train", 4, 16)))[0].shape == (4, 16, 16, 3)
    assert listed == []

    monkeypatch.setattr(data, "get_dataset_spec", resolve)
    images, _ = next(iter(data.evaluation_dataset(f"folder:{tree}", None, "test", batch_size=6)))
    assert images.shape == (6, 20, 20, 3)  # at the measured size
    assert len(listed) == 1

def test_the_pretraining_pipeline_trains_at_the_augmenters_size_without_announcing_the_folders(tree, capsys):
    # pretrain.py --image_size=16 on 20-px images: the folder's size decides
    # only the in-memory cache, so it is looked at, not announced as used.
    augmenter = TwoViewAugmenter(get_preset("folder", image_size=16))
    batch = next(iter(data.pretrain_dataset(f"folder:{tree}", None, 12, augmenter, seed=0)))
    assert batch.shape == (12, 2, 16, 16, 3)
    assert "Image size" not in capsys.readouterr().out



def test_test_folder_is_the_evaluation_split_and_train_alone_pretrains(tmp_path):
    tree = make_tree(tmp_path / "with_test", evaluation="test")
    spec = data.get_dataset_spec(f"folder:{tree}")
    assert (spec.train_split, spec.test_split) == ("train", "test")
    assert data.num_examples(f"folder:{tree}", None, "test") == 6
    only_train = tmp_path / "only_train"
    only_train.mkdir()
    (tree / "train").rename(only_train / "train")
    spec = data.get_dataset_spec(f"folder:{only_train}")
    assert spec.pretrain_split == "train" and not spec.labelled and spec.num_classes == 3
    with pytest.raises(ValueError, match="no labels"):
        data.evaluation_dataset(f"folder:{only_train}", None, "test", 4)
    with pytest.raises(ValueError, match=r"splits train, not 'val'.*add a val or test/ folder"):
        data.load_split(f"folder:{only_train}", None, "val")


def test_size_is_capped_and_sampled_in_large_folders(tmp_path, monkeypatch):
    for index in range(6):
        write_image(tmp_path / "big" / "train" / "only" / f"{index}.jpg", 300, 400 + index, 5)
    assert data.get_dataset_spec(f"folder:{tmp_path / 'big'}").image_size == 224
    # Above FULL_CHECK_MAX_IMAGES, a sample spread over the classes is decoded.
    monkeypatch.setattr(data, "FULL_CHECK_MAX_IMAGES", 2)
    monkeypatch.setattr(data, "SIZE_SAMPLE", 3)
    tree = make_tree(tmp_path / "sampled")
    assert data.check_images(data.list_folder_split(str(tree), "train")[0]) == []
    assert data.get_dataset_spec(f"folder:{tree}").image_size in {18, 20, 21}


def test_empty_class_is_an_error_naming_it(tree):
    (tree / "train" / "emu").mkdir()
    (tree / "train" / "emu" / "readme.txt").write_text("images to come")
    with pytest.raises(FileNotFoundError, match=r"'.*train/emu' has no images.*remove the folder"):
        data.get_dataset_spec(f"folder:{tree}")
    (tree / "train" / "emu" / "readme.txt").unlink()
    (tree / "train" / "emu").rmdir()
    (tree / "val" / "dog" / "e.jpg").unlink()
    (tree / "val" / "dog" / "f.PNG").unlink()
    with pytest.raises(FileNotFoundError, match=r"'.*val/dog' has no images"):
        data.num_examples(f"folder:{tree}", None, "val")


def test_class_only_in_val_is_an_error_naming_it(tree):
    write_image(tree / "val" / "owl" / "x.jpg", 20, 20, 1)
    with pytest.raises(ValueError, match=r"'owl' of '.*val' are not in '.*train'.*Add them to train/"):
        data.get_dataset_spec(f"folder:{tree}")
    with pytest.raises(ValueError, match="'owl'"):
        data.load_split(f"folder:{tree}", None, "train")


def test_unreadable_images_are_errors_naming_the_file(tree):
    bad = tree / "train" / "dog" / "z.jpg"
    bad.write_text("this is text")
    with pytest.raises(ValueError, match=r"z\.jpg.*not a JPEG or PNG.*Fix or remove it"):
        data.get_dataset_spec(f"folder:{tree}")
    # A JPEG header followed by garbage passes the header check, not the decoding.
    good = (tree / "train" / "dog" / "a.JPG").read_bytes()
    bad.write_bytes(good[:20] + b"\0" * 40)
    with pytest.raises(ValueError, match=r"Cannot decode image file '.*dog/z\.jpg'.*corrupt or truncated"):
        data.load_split(f"folder:{tree}", None, "train")
    bad.unlink()
    (tree / "val" / "fox" / "f.PNG").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    with pytest.raises(ValueError, match=r"fox/f\.PNG"):
        data.evaluation_dataset(f"folder:{tree}", None, "test", 4)


def test_train_without_classes_is_an_error(tmp_path):
    write_image(tmp_path / "train" / "loose.jpg", 20, 20, 1)
    with pytest.raises(FileNotFoundError, match=r"no class subfolders.*train/<class>"):
        data.get_dataset_spec(f"folder:{tmp_path}")


def run_script(name, *flags, timeout=300):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / name), *flags], capture_output=True, text=True,
        timeout=timeout, cwd=REPO_ROOT, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )


def test_evaluation_on_a_labelled_folder(tree):
    """kNN and the linear probe on train/ and val/ (in-process: the script's
    wiring is tested end to end on CIFAR-10 in tests/test_evaluation.py)."""
    from keras_directcopy.evaluation import evaluate_encoder
    from keras_directcopy.models.backbones import build_backbone

    dataset = f"folder:{tree}"
    size = data.get_dataset_spec(dataset).image_size
    encoder = build_backbone("resnet20", (size, size, 3), width_multiplier=0.25)
    metrics = evaluate_encoder(encoder, dataset, None, knn_k=3, linear_epochs=2, batch_size=4)
    knn, probe = metrics["knn"], metrics["linear_probe"]
    assert (knn["train_examples"], knn["test_examples"], knn["k"]) == (12, 6, 3)
    assert (knn["train_split"], knn["test_split"]) == ("train", "val")
    assert 0.0 <= knn["top1"] <= 1.0 and 0.0 <= probe["top1"] <= 1.0 and probe["epochs"] == 2


def test_an_encoder_of_fixed_size_is_evaluated_at_it_without_measuring_the_folder(tree, capsys):
    # A 16-px encoder (a pilot trained at --image_size=16) on 20-px images: the
    # folder's own size is neither measured nor announced as the one used.
    from keras_directcopy.evaluation import evaluate_encoder
    from keras_directcopy.models.backbones import build_backbone

    encoder = build_backbone("resnet20", (16, 16, 3), width_multiplier=0.25)
    metrics = evaluate_encoder(encoder, f"folder:{tree}", None, knn_k=3, linear_probe=False, batch_size=4)
    assert metrics["knn"]["test_examples"] == 6
    assert "Image size" not in capsys.readouterr().out
    # The folder's size is measured when a size is needed, and said once.
    assert data.get_dataset_spec(f"folder:{tree}").image_size == 20
    assert "Image size 20 px: the median shorter side" in capsys.readouterr().out


@pytest.mark.slow
def test_pretrain_script_on_a_labelled_folder_computes_knn(tree, tmp_path):
    result = run_script(
        "pretrain.py", "--config=quickstart", f"--dataset=folder:{tree}", "--backbone=resnet20",
        "--width_multiplier=0.25", "--epochs=1", "--steps_per_epoch=2", "--batch_size=4",
        "--knn_k=3", f"--output_dir={tmp_path / 'run'}", "--verbose=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training at 20 x 20 px (the default of folder:" in result.stdout
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["pretrain_examples"] == 12 and run["steps"] == 2
    assert 0.0 <= run["final_metrics"]["knn_accuracy"] <= 1.0


def test_finetuning_on_a_labelled_folder(tree, tmp_path):
    """In-process, as above; tests/test_evaluation.py runs finetune.py itself."""
    from keras_directcopy.evaluation.finetune import FinetuneConfig, finetune
    from keras_directcopy.models.backbones import build_backbone

    encoder = build_backbone("resnet20", (20, 20, 3), width_multiplier=0.25)
    results = finetune(encoder, f"folder:{tree}", None, str(tmp_path / "finetune"),
                       FinetuneConfig(epochs=1, batch_size=4), verbose=0)
    assert (results["train_split"], results["test_split"], results["train_examples"]) == ("train", "val", 12)
    assert results["steps"] == 3 and 0.0 <= results["test_top1"] <= 1.0
    assert (tmp_path / "finetune" / "classifier.keras").exists()
    assert json.loads((tmp_path / "finetune" / "finetune.json").read_text()) == results


def test_a_bad_finetune_recipe_is_refused():
    from keras_directcopy.evaluation.finetune import FinetuneConfig

    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\); got 1.0"):
        FinetuneConfig(dropout=1.0)
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        FinetuneConfig(epochs=0)
