"""Publish a pretrained encoder of the `zoo/` registry to the Hugging Face Hub.

    python scripts/publish.py --preset=directcopy_resnet20_cifar10 \
        --weights=runs/directcopy_resnet20_cifar10/encoder.weights.h5 --dry_run --out_dir=hub/c10

The repository is the preset's (`hub.repo_id` in its zoo/ entry) unless
`--repo_id=ORG/NAME` names another.

The preset must record the weights' sha256 and the metrics `scripts/evaluate.py`
measured. The repository folder (the weights, once, as `model.weights.h5`;
the architecture file `encoder.config.json` when the preset records one,
`config.json`, `metrics.json`, `run.json`, `README.md` model card) is built
and checked first; without `--dry_run` it is then uploaded with the token in
`$HF_TOKEN`. The folder is also a model in Keras' saving format
(`config.json` and `model.weights.h5`), so plain Keras loads the published
repository without this package: `keras.saving.load_model("hf://ORG/NAME")`;
`load_pretrained` reads the same `model.weights.h5` and checks its sha256.
Weights come from `--weights`, or else from where the registry says they are
published (`keras_directcopy.presets.zoo.resolve_file`, sha256-verified); the
architecture file from `--architecture`, or else from next to `--weights`
(where `scripts/pretrain.py` writes it), or else from the registry.
"""

import os
import sys

import runtime_defaults  # noqa: E402,F401 (this folder: TensorFlow's environment, set before it loads)

from absl import app, flags  # noqa: E402

flags.DEFINE_string("preset", None, "Preset name or dataset alias of the zoo/ registry.", required=True)
flags.DEFINE_string(
    "repo_id", None, "Hub model repository, ORG/NAME (default: the preset's, its hub.repo_id in zoo/).",
)
flags.DEFINE_bool("dry_run", False, "Only build the folder and list its files; upload nothing.")
flags.DEFINE_string("out_dir", None, "Where to build the folder (default: a temporary directory).")
flags.DEFINE_bool("private", False, "Create the repository private (an existing one keeps its visibility).")
flags.DEFINE_string(
    "weights", None,
    "Local encoder weights to publish, e.g. <output_dir>/encoder.weights.h5 of scripts/pretrain.py "
    "(default: the preset's, through the registry).",
)
flags.DEFINE_string(
    "head", None,
    "Local linear-probe head weights, for a preset that declares a head (default: the preset's, "
    "through the registry).",
)

flags.DEFINE_string(
    "architecture", None,
    "Local architecture file (encoder.config.json of scripts/pretrain.py), for a preset that "
    "records one (default: next to --weights, else the preset's, through the registry).",
)

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # Imported here so that --help and flag errors do not wait for TensorFlow.
    from keras_directcopy.presets import checks, upload, zoo
    from keras_directcopy.utils.files import WriteFailed

    try:
        preset = zoo.get_preset(FLAGS.preset)
        # Checked before resolving the weights, so an unpublishable preset
        # gets the fix rather than a download error.
        checks.check_publishable(preset)
        weights = FLAGS.weights or zoo.resolve_weights(preset)
        head = FLAGS.head
        if head is None and preset.get("head"):
            head = zoo.resolve_file(preset, preset["head"])
        architecture = FLAGS.architecture
        if architecture is None and preset.get("architecture") and not FLAGS.weights:
            # With --weights, upload.publish takes the file next to them.
            architecture = zoo.resolve_file(preset, preset["architecture"])
        repo_id = FLAGS.repo_id or preset["hub"]["repo_id"]
        result = upload.publish(
            preset, weights, repo_id, dry_run=FLAGS.dry_run, out_dir=FLAGS.out_dir,
            private=FLAGS.private, head_path=head, architecture_path=architecture,
        )
    except WriteFailed as error:
        sys.exit(f"publish.py: {error} Make room and run it again.")
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        sys.exit(f"publish.py: {error}")
    if FLAGS.dry_run:
        print(f"Dry run: repository folder for {repo_id} at {result}")
        for name in sorted(os.listdir(result)):
            print(f"  {name}  ({os.path.getsize(os.path.join(result, name))} bytes)")
        print(f"It loads with keras.saving.load_model({result!r}), as keras.saving.load_model("
              f"'hf://{repo_id}') will once uploaded.")
    else:
        print(f"Published {preset['name']} to {repo_id}: {result}")


if __name__ == "__main__":
    app.run(main)
