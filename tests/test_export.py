"""scripts/export.py: the cifar10 preset's encoder, and a classifier, exported
by Keras' `Model.export` as a TensorFlow SavedModel, ONNX and LiteRT; each
artifact, run in its own runtime, gives Keras' outputs on the same images.
Bad flags, an unknown preset and a missing export package are one-line errors
that name the fix."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_directcopy as kdc
from keras_directcopy.models.heads import build_linear_head, set_feature_statistics
from keras_directcopy.presets import zoo
from keras_directcopy.utils.files import sha256_file
from tests.test_zoo import tiny_model_folder

REPO_ROOT = Path(__file__).resolve().parents[1]
OUTPUT_NAMES = {"tf_saved_model": "saved_model", "onnx": "model.onnx", "litert": "model.tflite"}
# The goal: each output within 1e-4 of Keras', relative to its own size.
# Features and probabilities are of order 1; the absolute 1e-6 (about ten
# float32 roundings of 1) decides only for elements far below 1 (a feature
# near 0, an unlikely class), whose rounding error comes from order-1 terms
# and so is no fixed fraction of their own size.
RTOL, ATOL = 1e-4, 1e-6


def run_export(*flags, env=None):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "export.py"), *flags], capture_output=True,
        text=True, timeout=300, cwd=REPO_ROOT,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env or {})},
    )


def seeded_images(size, count=4, seed=0):
    """`(count, size, size, 3)` float32 images of whole values 0..255, as decoded uint8 pixels."""
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3)).astype(np.float32)


def run_saved_model(path, images):
    """The outputs of the `serve` endpoint, checked equal to the
    `serving_default` signature's (what TensorFlow Serving calls)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # held while it runs: it owns the variables
    served = loaded.serve(tf.constant(images)).numpy()
    signature = loaded.signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_array_equal(signature["output_0"].numpy(), served)
    return served


def run_onnx(path, images):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # The images are the only input (scripts/export.py drops the unread ones tf2onnx adds).
    assert [model_input.name for model_input in session.get_inputs()] == ["images"]
    return session.run(None, {"images": images})[0]


def run_litert(path, images):
    from ai_edge_litert.interpreter import Interpreter

    # The signature runner resizes the exported (-1, H, W, 3) input to this batch.
    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    return runner(images=images)["output_0"]


RUNTIMES = {"tf_saved_model": run_saved_model, "onnx": run_onnx, "litert": run_litert}


def export_and_compare(source_flag, keras_model, export_format, folder, *flags):
    """Exports the model of `source_flag` (`--preset=...` or `--encoder=...`)
    with the flags into `folder`, runs the artifact on four seeded images and
    checks its outputs against `keras_model`'s; returns the artifact's path."""
    output = folder / OUTPUT_NAMES[export_format]
    result = run_export(source_flag, f"--format={export_format}", f"--output={output}", *flags)
    assert result.returncode == 0, result.stderr
    assert f"as {export_format} to {output}" in result.stdout
    images = seeded_images(keras_model.input_shape[1])
    exported = RUNTIMES[export_format](output, images)
    expected = np.asarray(keras_model(images))
    assert exported.shape == expected.shape
    np.testing.assert_allclose(exported, expected, rtol=RTOL, atol=ATOL)
    # Moved into place by a rename: no temporary is left beside it.
    assert [path.name for path in folder.iterdir() if path.name.startswith(".")] == []
    return output


@pytest.mark.slow
@pytest.mark.parametrize("export_format", sorted(OUTPUT_NAMES))
def test_the_exported_encoder_gives_keras_features(export_format, tmp_path):
    encoder = kdc.load_pretrained("cifar10")
    export_and_compare("--preset=cifar10", encoder, export_format, tmp_path)


@pytest.mark.slow
def test_a_saved_encoder_file_is_exported_as_it_is(tmp_path):
    encoder = kdc.load_pretrained("cifar10")
    encoder.save(tmp_path / "encoder.keras")
    (tmp_path / "export").mkdir()
    export_and_compare(f"--encoder={tmp_path / 'encoder.keras'}", encoder, "onnx", tmp_path / "export")


@pytest.fixture(scope="module")
def classifier_preset(tmp_path_factory):
    """A preset with a classifier head: cifar10 where its registry entry
    ships one, else a local preset folder (as scripts/publish.py writes it)
    of a small ResNet-20 and a seeded linear head."""
    if zoo.get_preset("cifar10").get("head"):
        return "cifar10"
    folder = tmp_path_factory.mktemp("classifier") / "model"
    encoder, config = tiny_model_folder(folder)
    head = build_linear_head(encoder.output_shape[-1], config["num_classes"])
    set_feature_statistics(head, encoder(seeded_images(32, count=64, seed=1)))
    # A Dense layer starts at zero, which would score every class alike.
    rng = np.random.default_rng(2)
    dense = head.layers[-1]
    dense.set_weights([rng.normal(0, 0.5, weight.shape).astype(np.float32) for weight in dense.get_weights()])
    head.save_weights(folder / "linear_head.weights.h5")
    config["head"] = {"filename": "linear_head.weights.h5", "sha256": sha256_file(folder / "linear_head.weights.h5")}
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


@pytest.mark.slow
@pytest.mark.parametrize("export_format", sorted(OUTPUT_NAMES))
def test_the_exported_classifier_gives_keras_probabilities(export_format, classifier_preset, tmp_path):
    classifier = kdc.load_pretrained(classifier_preset, include_top=True)
    # An existing output, here a directory or a file, is replaced with --overwrite.
    stale = tmp_path / OUTPUT_NAMES[export_format]
    if export_format == "tf_saved_model":
        stale.mkdir()
        (stale / "stale.txt").write_text("an earlier export")
    else:
        stale.write_text("an earlier export")
    output = export_and_compare(
        f"--preset={classifier_preset}", classifier, export_format, tmp_path, "--include_top", "--overwrite"
    )
    assert not (output / "stale.txt").exists()


def one_error_line(result):
    """The error line, checked to be the only one of the failed run's
    output apart from TensorFlow's own log lines."""
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
    return errors[0]


@pytest.mark.parametrize("flags, message", [
    (["--preset=cifar10", "--format=torchscript", "--output=x"],
     "unknown --format='torchscript': use one of tf_saved_model, onnx, litert."),
    (["--preset=cifar10"], "pass --output=PATH"),
    (["--output=x"], "pass exactly one of --preset=NAME and --encoder=PATH.keras."),
    (["--preset=cifar10", "--encoder=encoder.keras", "--output=x"], "pass exactly one of"),
    (["--encoder=missing.keras", "--output=x"], "--encoder=missing.keras: no such file."),
    (["--encoder=missing.keras", "--include_top", "--output=x"], "--include_top needs --preset"),
    (["--preset=cifar10", "--format=litert", "--output=model.onnx"], "end --output with .tflite."),
    (["--preset=cifar10", "--format=tf_saved_model", "--output=model.onnx"], "writes a directory"),
])
def test_bad_flags_are_one_line_errors(flags, message):
    assert message in one_error_line(run_export(*flags))


def test_an_existing_output_is_kept_without_overwrite(tmp_path):
    output = tmp_path / "model.onnx"
    output.write_text("an earlier export")
    line = one_error_line(run_export("--preset=cifar10", "--format=onnx", f"--output={output}"))
    assert line == f"error: --output={output} exists: pass --overwrite to replace it."
    assert output.read_text() == "an earlier export"


def test_a_missing_export_package_names_the_extra(tmp_path):
    # A tf2onnx that cannot be imported, as in an environment without [export].
    (tmp_path / "tf2onnx.py").write_text("raise ModuleNotFoundError(\"No module named 'tf2onnx'\")\n")
    python_path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    result = run_export("--preset=cifar10", "--format=onnx", f"--output={tmp_path / 'model.onnx'}",
                        env={"PYTHONPATH": python_path})
    assert one_error_line(result) == (
        "error: --format=onnx needs the tf2onnx package (No module named 'tf2onnx'): "
        "pip install \"keras-directcopy[export]\""
    )
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.slow
def test_an_unknown_preset_lists_the_valid_names(tmp_path):
    line = one_error_line(run_export("--preset=cifar-10", f"--output={tmp_path / 'model'}"))
    assert line.startswith("error: Unknown pretrained model 'cifar-10'. Valid names:") and "cifar10" in line
    assert not (tmp_path / "model").exists()
