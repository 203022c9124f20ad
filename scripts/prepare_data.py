"""Prepare a TFDS data directory from local files, for machines without internet.

Afterwards `tfds.load(NAME, data_dir=DATA_DIR, download=False)` works as on a
connected machine. Supported are CIFAR-10 and CIFAR-100 from local `.npz`
files; for other datasets the error message says what to do instead. (On a
connected machine this is optional: `pretrain.py`, `evaluate.py` and
`finetune.py` download a missing dataset through tfds on first use.)

    python scripts/prepare_data.py --data_dir ~/tensorflow_datasets
    python scripts/prepare_data.py --data_dir /tmp/tfds --max_examples_per_split 200
    python scripts/prepare_data.py --dataset=cifar100 --source_dir=~/cifar100_arrays

CIFAR-10 is read from `../shared/data/cifar10` by default. CIFAR-100 has no
shared copy: build its arrays once on each machine as
`../shared/data/cifar100/README.md` describes, and pass their directory as
`--source_dir`.

`--max_examples_per_split` writes a partial dataset (first N examples per
split) for quick trials; it is marked as partial, and a later full run
replaces it.
"""

import os
import sys
import time

import runtime_defaults  # noqa: E402,F401 (this folder: TensorFlow's environment, set before it loads)

from absl import app, flags, logging  # noqa: E402

from keras_directcopy.data import offline as offline_data  # noqa: E402

# The shared data lives next to the repository, not inside it.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHARED_DATA = os.path.normpath(os.path.join(_REPO_ROOT, "..", "shared", "data"))
# Source directory of each dataset when --source_dir is not given. CIFAR-100
# has none: its arrays are too large to share and are built on each machine.
DEFAULT_SOURCE_DIRS = {"cifar10": os.path.join(_SHARED_DATA, "cifar10")}
DEFAULT_SOURCE_DIR = DEFAULT_SOURCE_DIRS["cifar10"]
CIFAR100_README = os.path.join(_SHARED_DATA, "cifar100", "README.md")
# The same default TFDS itself uses, so plain `tfds.load` finds the data too.
DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "dataset", "cifar10", "TFDS name of the dataset to prepare: cifar10 or cifar100."
)
flags.DEFINE_string(
    "source_dir",
    None,
    f"Directory with the local source files. Default for cifar10: {DEFAULT_SOURCE_DIR} (with "
    "its SHA256SUMS); cifar100 needs it: the directory build_cifar100.py wrote "
    f"(see {CIFAR100_README}).",
)
flags.DEFINE_string(
    "data_dir", DEFAULT_DATA_DIR, "TFDS data directory to write, later passed to tfds.load."
)
flags.DEFINE_integer(
    "max_examples_per_split",
    None,
    "Keep only the first N examples of each split (partial dataset, for quick trials).",
    lower_bound=1,
)
flags.DEFINE_bool(
    "overwrite",
    False,
    "Replace a dataset already at the destination even if it was not prepared by this "
    "script. Partial datasets prepared by it are replaced without this flag.",
)


def default_source_dir(dataset):
    """The source directory of `dataset` when --source_dir is not given.

    Args:
        dataset: str, the --dataset value.

    Returns:
        str, or None for a dataset that `offline_data` does not support (its
        own error then says what to do).

    Raises:
        ValueError: for cifar100, which has no shared copy; the message says
            how to build the arrays.
    """
    name = dataset.strip().lower()
    if name == "cifar100":
        raise ValueError(
            "--dataset=cifar100 needs --source_dir: there is no shared copy of its arrays. "
            f"Build them once on this machine by the three steps of {CIFAR100_README}: clone "
            "the public GitHub repository Taragon123/Taragon123.github.io, extract "
            "its cifar-100-binary folder at commit d5157869e733890c946d52efadee335f8fef5729 "
            "into ~/c100src (git archive), and run `python3 "
            f"{os.path.join(_SHARED_DATA, 'cifar100', 'build_cifar100.py')} "
            "~/c100src/cifar-100-binary ~/cifar100_arrays`; then pass "
            "--source_dir=~/cifar100_arrays."
        )
    return DEFAULT_SOURCE_DIRS.get(name)


def main(argv):
    del argv  # No positional arguments.
    logging.set_verbosity(logging.INFO)
    start = time.time()
    try:
        source_dir = FLAGS.source_dir or default_source_dir(FLAGS.dataset)
        dataset_dir = offline_data.prepare(
            FLAGS.dataset,
            source_dir,
            FLAGS.data_dir,
            max_examples_per_split=FLAGS.max_examples_per_split,
            overwrite=FLAGS.overwrite,
        )
    except (ValueError, OSError) as error:
        # The messages say what is wrong and how to fix it; a traceback
        # would only bury them.
        sys.exit(f"error: {error}")
    data_dir = os.path.abspath(os.path.expanduser(FLAGS.data_dir))
    state = offline_data.inspect_dataset_dir(dataset_dir)
    counts = ", ".join(f"{split}: {count}" for split, count in (state["counts"] or {}).items())
    partial = bool((state["metadata"] or {}).get("partial"))
    print(f"{FLAGS.dataset} is in {dataset_dir} ({counts}; {time.time() - start:.0f} s).")
    if partial:
        print("PARTIAL dataset: only the first examples of each split, for quick trials.")
    print("It now loads without network with:")
    print(f"  {offline_data.tfds_load_call(FLAGS.dataset, data_dir)}")


if __name__ == "__main__":
    app.run(main)
