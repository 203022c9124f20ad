"""Record a finished pretraining run as the weights of a zoo preset.

    # 1. The weights and the run record (sha256, epochs, command, run.json):
    python scripts/register_preset.py --preset=directcopy_resnet20_cifar10 \
        --run_dir=runs/directcopy_resnet20_cifar10 --bundle

    # 2. Measure the registered preset, exactly as users load it:
    python scripts/evaluate.py --preset=directcopy_resnet20_cifar10 --output=runs/c10_eval.json

    # 3. Its metrics, which also writes the model card model_cards/<preset>.md:
    python scripts/register_preset.py --preset=directcopy_resnet20_cifar10 \
        --metrics=runs/c10_eval.json

Registering a run records the sha256 of its weights and of its architecture
file (`encoder.config.json`, which `scripts/pretrain.py` writes next to the
weights: the trained encoder as Keras serializes it), and the stem and input
normalization the encoder was built with (`backbone_kwargs`, as
`keras_directcopy.backbones.resolve_architecture_kwargs` resolves them). The
run's encoder is then loaded exactly as `load_pretrained` will load the
preset, so a run whose architecture is not the preset's is refused.

`--bundle` copies the weights and the architecture file into `zoo/<preset>/`
(for small encoders, about 1 MB, shipped with the package); without it they
are expected on the preset's Hub repository (`scripts/publish.py`). Every
file is written atomically, the preset file last, and only after every check
passed.
"""

import json
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_string("preset", None, "Preset name (its file is <zoo_dir>/<preset>.json).", required=True)
flags.DEFINE_string("run_dir", None, "A finished scripts/pretrain.py output directory.")
flags.DEFINE_bool(
    "bundle", False,
    "Copy the weights and architecture file into <zoo_dir>/<preset>/ (small encoders only).",
)
flags.DEFINE_string("metrics", None, "Metrics JSON of scripts/evaluate.py on this preset.")
flags.DEFINE_string("zoo_dir", os.path.join(REPO_ROOT, "zoo"), "The registry directory.")
flags.DEFINE_string("cards_dir", os.path.join(REPO_ROOT, "model_cards"), "Where model cards go.")

FLAGS = flags.FLAGS
MAX_BUNDLED_BYTES = 4 * 2**20
RUN_WEIGHTS_FILENAME = "encoder.weights.h5"  # as scripts/pretrain.py writes it


def register_run(preset, run_dir, bundle):
    """Sets the preset's weights and architecture sha256, resolved
    architecture arguments and run record from `run_dir`.

    Returns:
        `[(source path, preset entry)]`: the run's architecture and weights
        files, to bundle (copy) when `bundle` is true.

    Raises:
        ValueError: if the run is unfinished, trained something else, has no
            architecture file, or does not load as the preset's architecture.
    """
    from keras_directcopy import zoo
    from keras_directcopy.backbones import ARCHITECTURE_FILENAME, resolve_architecture_kwargs
    from keras_directcopy.io_utils import sha256_file

    with open(os.path.join(run_dir, "run.json")) as file:
        run = json.load(file)
    config = run["config"]
    if run["epochs_done"] < config["epochs"]:
        raise ValueError(
            f"{run_dir} has run {run['epochs_done']} of its {config['epochs']} epochs: finish it "
            "(re-run its command, which resumes) before registering it."
        )
    expected = (preset["dataset"], preset["backbone"], preset.get("backbone_kwargs", {}).get("width_multiplier", 1.0))
    actual = (config["dataset"], config["backbone"], config["width_multiplier"])
    if expected != actual or config["predictor"] != preset["method"]:
        raise ValueError(
            f"{run_dir} trained {config['predictor']} on {actual} (dataset, backbone, width), but "
            f"preset {preset['name']!r} is {preset['method']} on {expected}."
        )
    if len(set(run["commands"])) != 1:
        raise ValueError(f"{run_dir} was resumed with different commands: {run['commands']}.")
    weights = os.path.join(run_dir, RUN_WEIGHTS_FILENAME)
    architecture = os.path.join(run_dir, ARCHITECTURE_FILENAME)
    if not os.path.exists(architecture):
        raise ValueError(
            f"{run_dir} has no {ARCHITECTURE_FILENAME}, the architecture scripts/pretrain.py "
            "writes next to the weights (runs from before it do not have one). Write it from the "
            "run's own encoder.keras, then register again:\n  python -c \"import keras; from "
            "keras_directcopy.backbones import write_architecture; write_architecture("
            f"keras.saving.load_model('{run_dir}/encoder.keras', safe_mode=True), "
            f"'{architecture}')\""
        )
    size = os.path.getsize(weights)
    if bundle and size > MAX_BUNDLED_BYTES:
        raise ValueError(
            f"{weights} is {size / 2**20:.1f} MB; only encoders up to {MAX_BUNDLED_BYTES >> 20} MB "
            "are bundled. Publish it to the preset's Hub repository instead (scripts/publish.py)."
        )
    preset["weights"].update(sha256=sha256_file(weights), bundled=bool(bundle))
    preset["architecture"] = {"filename": ARCHITECTURE_FILENAME, "sha256": sha256_file(architecture)}
    # The stem and normalization are recorded as resolved at the preset's
    # input shape, so the entry states them rather than leaving them to a rule.
    preset["backbone_kwargs"] = resolve_architecture_kwargs(
        preset["backbone"], preset["input_shape"], **(preset.get("backbone_kwargs") or {})
    )
    # Loaded as load_pretrained will load the registered preset: the
    # architecture file is checked (built-in layers only, and the backbone the
    # entry records at its input shape) and the weights must fit it.
    run_spec = {**preset, "weights": {**preset["weights"], "filename": RUN_WEIGHTS_FILENAME}}
    try:
        zoo.build_encoder(run_spec, ("dir", run_dir))
    except ValueError as error:
        raise ValueError(
            f"The encoder of {run_dir} is not the architecture preset {preset['name']!r} "
            f"records ({preset['backbone']}, {preset['backbone_kwargs']}, input "
            f"{preset['input_shape']}): {error}"
        ) from error
    # New weights void the metrics measured on the old ones.
    preset.update(epochs=run["epochs_done"], train_command=run["commands"][0], run=run, metrics=None)
    return [(architecture, preset["architecture"]), (weights, preset["weights"])]


def register_metrics(preset, metrics_path):
    """Sets the preset's metrics; returns its model card."""
    from keras_directcopy import hub

    with open(metrics_path) as file:
        metrics = json.load(file)
    if metrics.get("preset") != preset["name"]:
        raise ValueError(
            f"{metrics_path} was measured on {metrics.get('preset') or metrics.get('encoder')!r}, "
            f"not on the registered preset: run scripts/evaluate.py --preset={preset['name']}."
        )
    preset["metrics"] = metrics
    return hub.build_model_card(preset)  # also checks that the preset is publishable


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from keras_directcopy.io_utils import atomic_save, atomic_write_text

    path = os.path.join(FLAGS.zoo_dir, f"{FLAGS.preset}.json")
    run_files = card = None
    try:
        if not os.path.exists(path):
            raise FileNotFoundError(f"No preset file {path}; the preset names are the files in {FLAGS.zoo_dir}.")
        if not (FLAGS.run_dir or FLAGS.metrics):
            raise ValueError("Pass --run_dir (weights and run record) and/or --metrics.")
        with open(path) as file:
            preset = json.load(file)
        if FLAGS.run_dir:
            run_files = register_run(preset, FLAGS.run_dir, FLAGS.bundle)
        if FLAGS.metrics:
            card = register_metrics(preset, FLAGS.metrics)
    except (ValueError, FileNotFoundError, KeyError) as error:
        sys.exit(f"register_preset.py: {error}")
    # Every check passed: write the files, the registry entry last.
    if run_files and FLAGS.bundle:
        for source, entry in run_files:
            destination = os.path.join(FLAGS.zoo_dir, preset["name"], entry["filename"])
            atomic_save(destination, lambda temporary, source=source: shutil.copyfile(source, temporary))
    if card:
        atomic_write_text(os.path.join(FLAGS.cards_dir, f"{preset['name']}.md"), card)
    atomic_write_text(path, json.dumps(preset, indent=2) + "\n")
    print(f"Updated {path}: weights sha256 {preset['weights']['sha256']}"
          + (f", architecture sha256 {preset['architecture']['sha256']}" if run_files else "")
          + (f", bundled in {os.path.join(FLAGS.zoo_dir, preset['name'])}" if preset["weights"]["bundled"] else "")
          + ("; metrics and model card recorded." if preset.get("metrics") else "; no metrics yet."))


if __name__ == "__main__":
    app.run(main)
