"""Record a finished pretraining run as the weights of a zoo preset.

    # 1. The weights and the run record (sha256, epochs, command, run.json):
    python scripts/register_preset.py --preset=directcopy_resnet20_cifar10 \
        --run_dir=runs/directcopy_resnet20_cifar10 --bundle

    # 2. Measure the registered preset, exactly as users load it:
    python scripts/evaluate.py --preset=directcopy_resnet20_cifar10 --output=runs/c10_eval.json

    # 3. Its metrics, which also writes the model card model_cards/<preset>.md,
    #    and the linear-probe head they were measured with (step 2 with
    #    --save_head=runs/c10_head.weights.h5), for include_top=True:
    python scripts/register_preset.py --preset=directcopy_resnet20_cifar10 \
        --metrics=runs/c10_eval.json --head=runs/c10_head.weights.h5

    # 4. Optionally, other evaluations of the same preset, which the card
    #    shows in a table "Other evaluations" (and, for a random-init floor,
    #    the gain over it): another label set of its images, another kNN k,
    #    the random-init floor of its architecture. E.g. for CIFAR-100:
    python scripts/evaluate.py --preset=directcopy_resnet20_cifar100 \
        --dataset=cifar100:coarse_label --output=runs/c100_coarse.json
    python scripts/evaluate.py --preset=directcopy_resnet20_cifar100 --knn_k=20 \
        --output=runs/c100_k20.json
    python scripts/evaluate.py --preset=directcopy_resnet20_cifar100 --random_init --seed=0 \
        --output=runs/c100_random_init.json
    python scripts/register_preset.py --preset=directcopy_resnet20_cifar100 \
        --additional_metrics=runs/c100_coarse.json,runs/c100_k20.json,runs/c100_random_init.json

Registering a run records the sha256 of its weights and of its architecture
file (`encoder.config.json`, which `scripts/pretrain.py` writes next to the
weights: the trained encoder as Keras serializes it), and the stem and input
normalization the encoder was built with (`backbone_kwargs`, as
`keras_directcopy.models.backbones.resolve_architecture_kwargs` resolves them). The
run's encoder is then loaded exactly as `load_pretrained` will load the
preset, so a run whose architecture is not the preset's is refused.

`--metrics` is the trained encoder on the labels of its own dataset; a
random-init floor or another label set is refused there, and is passed as
`--additional_metrics` (comma-separated files, stored in the preset's
`additional_metrics` list). Each additional file must be `scripts/evaluate.py`
on this preset, on the splits of its metrics, and differ from them by its
label set, its kNN k or by being a random-init floor; one that repeats their
protocol is refused. A file that is the same evaluation as a recorded one
(label set, kNN k and temperature, random-init seed) replaces it; the others
stay. Registering new weights (`--run_dir`) voids `metrics` and
`additional_metrics`.

`--bundle` copies the weights and the architecture file into `zoo/<preset>/`
(for small encoders, about 1 MB, shipped with the package); without it they
are expected on the preset's Hub repository (`scripts/publish.py`). Every
file is written atomically, the preset file last, and only after every check
passed.
"""

import os
import sys

import runtime_defaults  # noqa: E402,F401 (this folder: TensorFlow's environment, set before it loads)

from absl import app, flags  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_string(
    "preset", None, "Preset name (its file is <zoo_dir>/<preset>.json) or its dataset alias (imagenette).",
    required=True,
)
flags.DEFINE_string("run_dir", None, "A finished scripts/pretrain.py output directory.")
flags.DEFINE_bool(
    "bundle", False,
    "Copy the weights and architecture file into <zoo_dir>/<preset>/ (small encoders only).",
)
flags.DEFINE_string("metrics", None, "Metrics JSON of scripts/evaluate.py on this preset.")
flags.DEFINE_string(
    "head", None,
    "The linear-probe head (scripts/evaluate.py --save_head) of the same evaluation as --metrics: "
    "the classifier load_pretrained(..., include_top=True) adds.",
)
flags.DEFINE_list(
    "additional_metrics", [],
    "Comma-separated metrics JSONs of other evaluations of this preset by scripts/evaluate.py: "
    "another label set (--dataset=cifar100:coarse_label), another --knn_k, or the random-init "
    "floor (--random_init --seed=S). Added to the preset's additional_metrics; one of the same "
    "evaluation replaces the recorded one.",
)
flags.DEFINE_string("zoo_dir", os.path.join(REPO_ROOT, "zoo"), "The registry directory.")
flags.DEFINE_string("cards_dir", os.path.join(REPO_ROOT, "model_cards"), "Where model cards go.")

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from keras_directcopy.presets.registration import register
    from keras_directcopy.utils.files import WriteFailed

    try:
        preset = register(FLAGS.preset, FLAGS.zoo_dir, FLAGS.cards_dir, run_dir=FLAGS.run_dir,
                          metrics=FLAGS.metrics, bundle=FLAGS.bundle,
                          additional_metrics=FLAGS.additional_metrics, head=FLAGS.head)
    except WriteFailed as error:
        sys.exit(f"register_preset.py: {error} The registry is as it was: make room and run it again.")
    except (ValueError, FileNotFoundError, KeyError) as error:
        sys.exit(f"register_preset.py: {error}")
    path = os.path.join(FLAGS.zoo_dir, f"{preset['name']}.json")
    print(f"Updated {path}: weights sha256 {preset['weights']['sha256']}"
          + (f", architecture sha256 {preset['architecture']['sha256']}" if FLAGS.run_dir else "")
          + (f", bundled in {os.path.join(FLAGS.zoo_dir, preset['name'])}" if preset["weights"]["bundled"] else "")
          + ("; metrics and model card recorded" if preset.get("metrics") else "; no metrics yet")
          + (f", with {len(preset['additional_metrics'])} additional evaluation(s)."
             if preset.get("additional_metrics") else "."))


if __name__ == "__main__":
    app.run(main)
