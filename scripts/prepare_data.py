"""Prepare a TFDS data directory from local files, for machines without internet.

Afterwards `tfds.load(NAME, data_dir=DATA_DIR, download=False)` works as on a
connected machine. Only CIFAR-10 from the local `.npz` files is supported;
for other datasets the error message says what to do instead.

    python scripts/prepare_data.py --data_dir ~/tensorflow_datasets
    python scripts/prepare_data.py --data_dir /tmp/tfds --max_examples_per_split 200

`--max_examples_per_split` writes a partial dataset (first N examples per
split) for quick trials; it is marked as partial, and a later full run
replaces it.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from keras_directcopy import offline_data  # noqa: E402

# The shared data lives next to the repository, not inside it.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SOURCE_DIR = os.path.normpath(os.path.join(_REPO_ROOT, "..", "shared", "data", "cifar10"))
# The same default TFDS itself uses, so plain `tfds.load` finds the data too.
DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "cifar10", "TFDS name of the dataset to prepare.")
flags.DEFINE_string(
    "source_dir", DEFAULT_SOURCE_DIR, "Directory with the local source files and SHA256SUMS."
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


def main(argv):
    del argv  # No positional arguments.
    logging.set_verbosity(logging.INFO)
    start = time.time()
    try:
        dataset_dir = offline_data.prepare(
            FLAGS.dataset,
            FLAGS.source_dir,
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
