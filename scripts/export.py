"""Export a pretrained encoder, or its classifier, for serving, by Keras' `Model.export`.

    # TensorFlow Serving reads numbered versions of a model: <base>/<name>/<version>/.
    python scripts/export.py --preset=cifar10 --format=tf_saved_model --output=models/cifar10/1

    # ONNX Runtime; with --include_top, the preset's shipped linear classifier.
    python scripts/export.py --preset=cifar10 --include_top --format=onnx --output=cifar10_classifier.onnx

    # LiteRT (on device), from a saved encoder.
    python scripts/export.py --encoder=runs/c10_r20/encoder.keras --format=litert --output=encoder.tflite

The artifact takes what the Keras model takes: float32 RGB images with values
0..255, shape `(N, H, W, 3)` at the preset's input size, any N (the
preprocessing is inside). It returns the encoder's `(N, D)` features, or with
`--include_top` the classifier's `(N, num_classes)` softmax probabilities
(`keras_directcopy.load_pretrained(..., include_top=True)`; only for a preset
that ships a head).

    --format=tf_saved_model  a directory; TensorFlow only. Its `serving_default`
                             signature takes `images` and returns `output_0`.
    --format=onnx            a `.onnx` file; needs tf2onnx and onnx.
    --format=litert          a `.tflite` file; TensorFlow's converter. Running
                             it in Python needs ai-edge-litert.

`pip install "keras-directcopy[export]"` installs the export packages and
the runtimes that run the artifacts (onnxruntime, ai-edge-litert). The output
is written to a temporary path in its directory, then renamed into place, so
it is either absent or complete; an existing output is refused unless
`--overwrite`. Errors (bad flags, an unknown preset, a missing package) are
one line on stderr, exit status 1.
"""

import contextlib
import importlib
import os
import sys
import warnings

import runtime_defaults  # noqa: E402,F401 (this folder: TensorFlow's environment, set before it loads)

from absl import app, flags, logging  # noqa: E402

flags.DEFINE_string("preset", None, "Pretrained preset name, dataset alias, local folder or hf:// id.")
flags.DEFINE_string("encoder", None, "A saved encoder (.keras, loaded with safe_mode=True), instead of --preset.")
flags.DEFINE_string("format", "tf_saved_model", "tf_saved_model (a directory) | onnx (a .onnx file) | "
                    "litert (a .tflite file).")
flags.DEFINE_bool("include_top", False, "Export the preset's classifier (its shipped linear head, softmax "
                  "probabilities) instead of the encoder's features.")
flags.DEFINE_string("output", None, "Where the artifact goes: a directory for tf_saved_model, else a file "
                    "with the format's extension.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output.")

FLAGS = flags.FLAGS
# The extension each format's output must have ("" for a directory).
EXTENSIONS = {"tf_saved_model": "", "onnx": ".onnx", "litert": ".tflite"}
FILE_EXTENSIONS = tuple(extension for extension in EXTENSIONS.values() if extension)
# The modules Keras' exporter imports for a format, beyond TensorFlow.
EXPORT_MODULES = {"onnx": ("tf2onnx", "onnx")}
INSTALL_EXPORT_EXTRA = "pip install \"keras-directcopy[export]\""


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    try:
        output = check_flags()
        check_export_modules(FLAGS.format)
        model, source = load_model()
        export_model(model, FLAGS.format, output)
    except (ValueError, FileNotFoundError, OSError) as error:
        # One line, even where the message spans several (a command to run).
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(1)
    inputs, outputs = model.inputs[0], model.outputs[0]
    print(
        f"Exported {source} as {FLAGS.format} to {FLAGS.output}: {inputs.name} "
        f"{inputs.dtype} {tuple(inputs.shape)} (values 0..255) -> {tuple(outputs.shape)}."
    )


def check_flags():
    """The output path, once the flags are consistent; fails before TensorFlow loads.

    Raises:
        ValueError: an unknown format; no `--output`; not exactly one of
            `--preset` and `--encoder`; `--include_top` with `--encoder`; an
            output without the format's extension, or one that exists
            without `--overwrite`.
        FileNotFoundError: the `--encoder` file does not exist.
    """
    if FLAGS.format not in EXTENSIONS:
        raise ValueError(f"unknown --format={FLAGS.format!r}: use one of {', '.join(EXTENSIONS)}.")
    if bool(FLAGS.preset) == bool(FLAGS.encoder):
        raise ValueError("pass exactly one of --preset=NAME and --encoder=PATH.keras.")
    if FLAGS.encoder:
        if FLAGS.include_top:
            raise ValueError("--include_top needs --preset (a preset that ships a classifier head); "
                             "an --encoder file is exported as it is.")
        if not os.path.isfile(os.path.expanduser(FLAGS.encoder)):
            raise FileNotFoundError(f"--encoder={FLAGS.encoder}: no such file.")
    if not FLAGS.output:
        raise ValueError("pass --output=PATH: a directory for tf_saved_model, a .onnx or .tflite file for "
                         "onnx or litert.")
    output = os.path.expanduser(FLAGS.output)
    extension = EXTENSIONS[FLAGS.format]
    if extension and not output.endswith(extension):
        raise ValueError(f"--format={FLAGS.format} writes a {extension} file: end --output with {extension}.")
    if not extension and output.endswith(FILE_EXTENSIONS):
        raise ValueError(f"--format={FLAGS.format} writes a directory; --output={FLAGS.output} names a file.")
    if os.path.lexists(output) and not FLAGS.overwrite:
        raise ValueError(f"--output={FLAGS.output} exists: pass --overwrite to replace it.")
    return output


def check_export_modules(export_format):
    """Raises ValueError, naming the extra to install, if a module that
    Keras' exporter needs for `export_format` cannot be imported."""
    for module in EXPORT_MODULES.get(export_format, ()):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ValueError(
                f"--format={export_format} needs the {module} package ({error}): {INSTALL_EXPORT_EXTRA}"
            ) from error


def load_model():
    """`(model, description)`: the preset's encoder or classifier, or the `--encoder` file."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ValueError(f"export runs on Keras' TensorFlow backend, not {keras.backend.backend()}: "
                         "unset KERAS_BACKEND or set it to tensorflow.")
    if FLAGS.encoder:
        path = os.path.expanduser(FLAGS.encoder)
        return keras.saving.load_model(path, safe_mode=True), f"encoder {FLAGS.encoder}"

    import keras_directcopy

    model = keras_directcopy.load_pretrained(FLAGS.preset, include_top=FLAGS.include_top)
    return model, f"preset {FLAGS.preset} ({'classifier' if FLAGS.include_top else 'encoder'})"


def export_model(model, export_format, output):
    """Writes `model.export(output, format=export_format)` atomically: to a
    temporary path in `output`'s directory, then renamed to `output`
    (replacing what was there)."""
    from keras_directcopy.utils.files import atomic_save

    # Keras' numpy-2 patch of tf2onnx (keras/src/export/tf2onnx_lib.py) asks
    # numpy for np.object, which warns; nothing the user can act on.
    warnings.filterwarnings("ignore", message=".*np.object.*", category=FutureWarning)

    def save(path):
        with onnx_keeps_captured_constants() if export_format == "onnx" else contextlib.nullcontext():
            # The signature Keras derives for a functional model, given here
            # because its ONNX exporter otherwise also demands that the model
            # has been called once.
            model.export(path, format=export_format, verbose=False, input_signature=[model.input])

    atomic_save(output, save)


@contextlib.contextmanager
def onnx_keeps_captured_constants():
    """Within it, the ONNX files that Keras' exporter writes keep the
    constant tensors that the exported function captures.

    Keras' `Normalization` layers (the encoder's input normalization, the
    classifier head's standardization) hold their mean and variance as
    constant tensors, which the `tf.function` that Keras hands to
    `tf2onnx.convert.from_function` captures. tf2onnx 1.17 makes each
    captured tensor a graph input and drops its value (its `from_keras`
    leaves captures out of the inputs, `from_function` does not): ONNX
    Runtime then refuses to run the model without a value for each, and the
    caller cannot know the right one. Each such input becomes an
    initializer holding the captured value, or is dropped where no node
    reads it (TensorFlow's constant folding already used the value).
    """
    import tensorflow as tf
    import tf2onnx

    from_function = tf2onnx.convert.from_function

    def from_function_keeping_constants(function, input_signature=None, *args, output_path=None, **kwargs):
        # The concrete function is cached: tf2onnx converts this same one.
        concrete = function.get_concrete_function(*input_signature)
        constants = {
            internal.name: external.numpy()
            for external, internal in concrete.graph.captures
            if internal.dtype != tf.resource  # variables, which tf2onnx freezes with their values
        }
        converted = from_function(function, input_signature, *args, output_path=output_path, **kwargs)
        if output_path is not None:
            restore_captured_constants(output_path, constants)
        return converted

    tf2onnx.convert.from_function = from_function_keeping_constants
    try:
        yield
    finally:
        tf2onnx.convert.from_function = from_function


def restore_captured_constants(path, constants):
    """Rewrites the ONNX file at `path` with each graph input named in
    `constants` (`{tensor name: value}`) turned into an initializer holding
    its value, or dropped where no node reads it."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    captured = [graph_input for graph_input in model.graph.input if graph_input.name in constants]
    if not captured:
        return
    read = read_tensor_names(model.graph)
    for graph_input in captured:
        model.graph.input.remove(graph_input)
        if graph_input.name in read:
            model.graph.initializer.append(numpy_helper.from_array(constants[graph_input.name], graph_input.name))
    onnx.checker.check_model(model)
    onnx.save(model, path)


def read_tensor_names(graph):
    """The names of the tensors that the nodes of an ONNX `graph`, and of
    the subgraphs of its control-flow nodes, take as inputs."""
    names = set()
    for node in graph.node:
        names.update(node.input)
        for attribute in node.attribute:
            subgraphs = [*attribute.graphs, *([attribute.g] if attribute.HasField("g") else [])]
            for subgraph in subgraphs:
                names |= read_tensor_names(subgraph)
    return names


if __name__ == "__main__":
    app.run(main)
