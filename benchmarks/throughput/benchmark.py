"""Pretraining throughput, peak memory and predictor-update cost; or, with
`--augmenter_only`, the throughput of the two-view augmentation alone.

    python benchmarks/throughput/benchmark.py --data_dir=~/tensorflow_datasets --output=benchmark.md
    python benchmarks/throughput/benchmark.py --augmenter_only --dataset=stl10 --images=5000
    python benchmarks/throughput/benchmark.py --backends=tensorflow,jax --predictors=directcopy --inputs=synthetic

`--backends` measures the step on each Keras backend it names (TensorFlow, and
JAX through `models/train_step_jax.py`), each configuration in its own
process.

Each configuration runs in its own process, so that its peak memory is its
own: on a GPU the TensorFlow allocator's peak, on a CPU the process's peak
resident set size (which includes the TensorFlow runtime, ~1 GB).

Throughput is image pairs per second over the timed steps, after warm-up
steps that include compilation. "real" input is the augmented CIFAR-10
pipeline of `keras_directcopy.data.datasets` (prepared with scripts/prepare_data.py);
"synthetic" is one random batch repeated, which costs nothing to produce.
The predictor update (running correlation plus W_p) is timed alone, compiled
the same way as the train step, and reported as a percentage of a step.

Targets: real input at least 90% of synthetic throughput, and the DirectCopy
update under 1% of a step. The table marks every row that misses one.

`--view_batching` times the encoders' share of our step with the two views
run as two batches (what training does), as one batch, and as one batch with
per-view BatchNorm statistics (`benchmarks/throughput/view_batching.py`).

`--onednn_kernels` runs our step and the PyTorch peer with oneDNN's verbose
log and sums oneDNN's own time per kind of primitive: both frameworks run
their convolutions and (ours) BatchNorm in oneDNN, so this shows whether the
two steps ran the same kernels for the same time.

`--augmentation` chooses how the real pipeline augments: `auto` (its
default), `batch` (`TwoViewAugmenter.augment_batch`) and/or `image` (one image
at a time); explicit choices are labelled in the table's input column.

`--augmenter_only` times `keras_directcopy.data.augment.TwoViewAugmenter` with the
preset of `--dataset` (at `--view_size`, by default the preset's) on random
uint8 images held in memory (`--input_size` px, by default the view size),
one image at a time and, where the images allow it, by batches of 256
(`augment_batch`), alternating, each mapped with `num_parallel_calls=AUTOTUNE`,
and prints pairs per second of wall time and per CPU-second (which varies
less on a shared machine).
"""

import json
import os
import subprocess
import sys

# The project's scripts/ folder: its runtime_defaults sets TensorFlow's environment before it loads.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "scripts"))
import runtime_defaults  # noqa: E402,F401

from absl import app, flags, logging

flags.DEFINE_list("backbones", ["resnet20", "resnet18"], "Backbones to measure.")
flags.DEFINE_list("predictors", ["directcopy", "directpred", "directset", "linear", "mlp"], "Predictor modes.")
flags.DEFINE_list("inputs", ["synthetic", "real"], "Input kinds: synthetic and/or real.")
flags.DEFINE_list("xla", ["on", "off"], "XLA settings to measure.")
flags.DEFINE_list(
    "full_matrix_backbones", ["resnet20"],
    "Backbones measured over every predictor, input and XLA setting; the others "
    "only with synthetic input and the first --xla setting (ResNet-18 is slow on a CPU).",
)
flags.DEFINE_list(
    "batchnorm", ["fused"],
    "BatchNorm kernels of our step to measure: fused (TensorFlow's fused kernel, the default of "
    "training) and/or keras (Keras' op-by-op computation); see keras_directcopy.models.fused_batchnorm.",
)
flags.DEFINE_list(
    "augmentation", ["auto"],
    "How real input is augmented: auto (the pipeline's default: by the batch for views of up to "
    "64 px), batch (TwoViewAugmenter.augment_batch) and/or image (one image at a time); see "
    "keras_directcopy.data.batch_augment.",
)
flags.DEFINE_list(
    "backends", ["tensorflow"],
    "Keras backends to measure the step on, each configuration in its own process: tensorflow "
    "and/or jax (always XLA-compiled, with Keras' BatchNorm).",
)
flags.DEFINE_integer("batch_size", 128, "Global batch size.")
flags.DEFINE_integer("warmup_steps", 3, "Untimed steps (compilation included).")
flags.DEFINE_integer("steps", 10, "Timed steps.")
flags.DEFINE_string(
    "dataset", "cifar10",
    "Dataset of the real input pipeline; with --augmenter_only, the augmentation preset.",
)
flags.DEFINE_string("data_dir", None, "tfds data directory of the real input.")
flags.DEFINE_string("output", None, "Also write the Markdown table here.")
flags.DEFINE_string(
    "single", None,
    "Run one configuration and print its result: JSON with backbone, predictor, input (synthetic or real) and "
    "xla, and optionally recipe, batchnorm (fused or keras) and steps_per_execution (default 1).")
flags.DEFINE_enum(
    "peer", None, ["torch", "lightly"],
    "Also time a PyTorch implementation of the same DirectCopy step (benchmarks/throughput/torch_peer.py; "
    "pip install -e '.[bench]'), alternating with ours, and print the ratio per backbone. lightly: "
    "lightly's BYOL training loop end to end on real CIFAR-10 images (benchmarks/throughput/lightly_peer.py, run by "
    "--lightly_python) against our step on real input (fused BatchNorm, XLA off).",
)
flags.DEFINE_string(
    "lightly_python", None,
    "--peer=lightly: the Python that runs benchmarks/throughput/lightly_peer.py, with lightly, torchvision, numpy and pillow "
    "(default: this one). Build it outside the repository (CI installs neither): python3 -m venv "
    "$HOME/venvs/lightly && $HOME/venvs/lightly/bin/pip install torch torchvision lightly==1.6.0 numpy pillow, "
    "then --lightly_python=$HOME/venvs/lightly/bin/python.",
)
flags.DEFINE_list("peer_modes", ["channels_last", "compile"], "--peer=torch: PyTorch modes to time.")
flags.DEFINE_integer(
    "rounds", 2, "--peer, --view_batching: alternating rounds of the compared steps.", lower_bound=1
)
flags.DEFINE_string("peer_recipe", "cifar10_resnet20", "--peer: the recipe both steps follow.")
flags.DEFINE_string("single_peer", None, "Internal: time one PyTorch peer configuration (JSON).")
flags.DEFINE_bool(
    "profile", False,
    "Profile our DirectCopy step (--peer_recipe, synthetic input) with the TensorFlow profiler and print "
    "the share of convolutions, BatchNorm, the predictor, the optimizer and the rest, per backbone.",
)
flags.DEFINE_bool(
    "onednn_kernels", False,
    "Run our DirectCopy step (fused BatchNorm, XLA off, one inter-op thread) and the PyTorch peer (the first "
    "--peer_modes mode) with ONEDNN_VERBOSE=1, per backbone, and print oneDNN's time per step for each kind "
    "of primitive (convolutions by direction, BatchNorm, reorders) side by side.",
)
flags.DEFINE_bool(
    "view_batching", False,
    "Time the encoders' share of the step (--backbones, synthetic input, fused BatchNorm) with the two views "
    "as two batches (our step), as one batch, and as one batch with per-view BatchNorm statistics, "
    "alternating for --rounds rounds.",
)
flags.DEFINE_bool(
    "augmenter_only", False,
    "Time only the two-view augmentation of --dataset's preset on random images in memory.",
)
flags.DEFINE_integer(
    "input_size", None, "--augmenter_only: side of the source images (default: the view size)."
)
flags.DEFINE_integer(
    "view_size", None, "--augmenter_only: side of the views (default: the preset's).", lower_bound=1
)
flags.DEFINE_integer("images", 20_000, "--augmenter_only: images per timed pass.", lower_bound=1)
flags.DEFINE_integer("repeats", 3, "--augmenter_only: timed passes.", lower_bound=1)

FLAGS = flags.FLAGS


def report_augmenter_throughput(preset, input_size, images, repeats, view_size=None):
    """Prints `augmenter_throughput` of `preset`'s seeded augmenter, one line
    per pass: one image at a time and, where the images allow it, by the
    batch, alternating pass by pass."""
    from step_timing import augmenter_throughput

    from keras_directcopy.data import augment

    config = augment.get_preset(preset, image_size=view_size)
    side = input_size or config.image_size
    augmenter = augment.TwoViewAugmenter(config, seed=0)
    modes = ["per image"]
    if augmenter.supports_batches((side, side, 3)):
        modes.append("by batch")
    for _ in range(repeats):
        for mode in modes:
            [result] = augmenter_throughput(augmenter, side, images, 1, batched=mode == "by batch")
            print(
                f"{preset} {side}->{config.image_size} px, {mode}: {result['pairs_per_s']:.0f} pairs/s "
                f"({result['pairs_per_cpu_s']:.0f} pairs per CPU-second), "
                f"{len(os.sched_getaffinity(0))} CPU core(s) usable",
                flush=True,
            )


def configurations():
    for backend in FLAGS.backends:
        for backbone in FLAGS.backbones:
            full = backbone in FLAGS.full_matrix_backbones
            for predictor in FLAGS.predictors:
                for input_kind in FLAGS.inputs if full else ["synthetic"]:
                    if backend == "jax":
                        # Always XLA, with Keras' BatchNorm (see benchmarks/throughput/step_timing.py).
                        yield dict(backend=backend, backbone=backbone, predictor=predictor,
                                   input=input_kind, xla=True, batchnorm="keras")
                        continue
                    for xla in FLAGS.xla if full else FLAGS.xla[:1]:
                        for kernel in FLAGS.batchnorm:
                            for augmentation in FLAGS.augmentation if input_kind == "real" else ["auto"]:
                                yield dict(backend=backend, backbone=backbone, predictor=predictor,
                                           input=input_kind, xla=xla == "on", batchnorm=kernel,
                                           augmentation=augmentation)


def run_in_subprocess(config, flag="single", environment=None, with_output=False):
    """Runs one configuration (`--single`, or `--single_peer` with
    `flag="single_peer"`) in a fresh process with `environment` added to
    ours; returns its result, and with `with_output` also its stdout."""
    command = [sys.executable, os.path.abspath(__file__), f"--{flag}={json.dumps(config)}",
               f"--batch_size={FLAGS.batch_size}", f"--warmup_steps={FLAGS.warmup_steps}",
               f"--steps={FLAGS.steps}", f"--dataset={FLAGS.dataset}", f"--peer_recipe={FLAGS.peer_recipe}"]
    if FLAGS.data_dir:
        command.append(f"--data_dir={FLAGS.data_dir}")
    # Each configuration in a fresh process, on its Keras backend (TensorFlow
    # by default, as every configuration of the other modes).
    environment = {**os.environ, "KERAS_BACKEND": config.get("backend", "tensorflow"), **(environment or {})}
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode or not lines:
        raise RuntimeError(f"benchmark of {config} failed:\n{result.stderr[-3000:]}")
    measured = json.loads(lines[-1][len("RESULT "):])
    return (measured, result.stdout) if with_output else measured


def measure_peer(backbone, mode):
    """The PyTorch peer's step with `--peer_recipe`'s settings, in this process."""
    import torch_peer  # this folder

    from keras_directcopy import configs
    from keras_directcopy.data.datasets import get_dataset_spec
    from keras_directcopy.models.backbones import (
        INPUT_NORMALIZATION_STATS,
        resolve_architecture_kwargs,
    )
    from keras_directcopy.models.heads import default_projector_dims
    from keras_directcopy.models.predictors import DEFAULT_EPS

    config = configs.get_config(FLAGS.peer_recipe, backbone=backbone)
    size = get_dataset_spec(config.dataset).image_size
    if config.predictor != "directcopy" or config.normalization != "spectral":
        raise ValueError(f"The PyTorch peer implements DirectCopy with the spectral norm; "
                         f"--peer_recipe={FLAGS.peer_recipe} trains {config.predictor}.")
    statistics = resolve_architecture_kwargs(backbone, (size, size, 3))["input_normalization"]
    mean, std = INPUT_NORMALIZATION_STATS[statistics]
    return torch_peer.measure(
        backbone, mode, FLAGS.batch_size, FLAGS.warmup_steps, FLAGS.steps, mean, std, size=size,
        projector_dims=tuple(set_dim or default_dim for set_dim, default_dim in zip(
            (config.projector_hidden_dim, config.projection_dim), default_projector_dims(size))),
        lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, tau=config.ema,
        rho=config.rho, eps=DEFAULT_EPS["directcopy"] if config.eps is None else config.eps,
    )


def peer_comparison_config(backbone, xla, batchnorm):
    """Our side of a comparison with the PyTorch peer: the DirectCopy step of
    --peer_recipe on synthetic input, as a `--single` configuration."""
    return dict(backbone=backbone, predictor="directcopy", input="synthetic", xla=xla, batchnorm=batchnorm,
                recipe=FLAGS.peer_recipe)


def compare_with_peer():
    """Ours (every --xla setting) and the PyTorch peer (every --peer_modes
    mode), alternating for --rounds rounds, each in its own process, on the
    same synthetic batch size; prints and writes the table."""
    from step_timing import peer_table

    rows = []
    for backbone in FLAGS.backbones:
        ours, theirs = [], []
        for _ in range(FLAGS.rounds):
            for xla in FLAGS.xla:
                for kernel in FLAGS.batchnorm:
                    ours.append(run_in_subprocess(peer_comparison_config(backbone, xla == "on", kernel)))
                    print(json.dumps(ours[-1]), flush=True)
            for mode in FLAGS.peer_modes:
                theirs.append(run_in_subprocess({"backbone": backbone, "mode": mode}, flag="single_peer"))
                print(json.dumps(theirs[-1]), flush=True)
        rows.append((backbone, ours, theirs))
    measurements = "\n".join(json.dumps(result) for _, ours, theirs in rows for result in ours + theirs)
    text = (f"{hardware_line()} Batch {FLAGS.batch_size}, {FLAGS.steps} timed steps after "
            f"{FLAGS.warmup_steps} warm-up steps, synthetic input, recipe {FLAGS.peer_recipe}.\n"
            f"Command: python benchmarks/throughput/benchmark.py {' '.join(sys.argv[1:])}\n\n" + peer_table(rows)
            + "\n\nEvery measurement, per backbone, ours then PyTorch's:\n\n```\n" + measurements + "\n```")
    print_and_write(text)


def compare_with_lightly():
    """Our training step on real CIFAR-10 input (the `--single` real-input
    measurement: our tf.data pipeline and augmentation, fused BatchNorm, XLA
    off, --peer_recipe) and lightly's BYOL loop with its DataLoader and
    transforms (benchmarks/throughput/lightly_peer.py under --lightly_python), alternating
    for --rounds rounds, each in its own process, per backbone; prints and
    writes the table. Exits with one line where --lightly_python cannot
    import lightly's side."""
    python = FLAGS.lightly_python or sys.executable
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lightly_peer.py")
    if FLAGS.dataset != "cifar10":
        raise app.UsageError(f"--peer=lightly trains on CIFAR-10 only; got --dataset={FLAGS.dataset}.")

    def run_lightly(*arguments):
        try:
            result = subprocess.run([python, script, *arguments], check=False, capture_output=True, text=True)
        except OSError as error:
            sys.exit(f"--peer=lightly: cannot run --lightly_python={python}: {error.strerror}.")
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode or not lines:
            if arguments == ("--check",):  # lightly_peer.py's one-line message: what is missing, how to install it
                sys.exit(result.stderr.strip().splitlines()[-1] if result.stderr.strip()
                         else f"--peer=lightly: {python} {script} --check failed ({result.returncode}).")
            raise RuntimeError(f"lightly's BYOL loop failed:\n{result.stderr[-3000:]}")
        return json.loads(lines[-1])

    versions = run_lightly("--check")  # before any measurement
    lines = [("| backbone | ours: pairs/s, each round | lightly: pairs/s, each round | ours best | lightly best "
              "| ours / lightly | lightly: loader wait, CPU-s per step main + workers (best round) "
              "| peak RSS (MB), ours best / lightly best (+ largest worker) |"),
             "|---|---|---|---|---|---|---|---|"]
    measurements = []
    for backbone in FLAGS.backbones:
        ours, theirs = [], []
        for _ in range(FLAGS.rounds):
            ours.append(run_in_subprocess(
                {**peer_comparison_config(backbone, xla=False, batchnorm="fused"), "input": "real"}))
            print(json.dumps(ours[-1]), flush=True)
            theirs.append(run_lightly(f"--backbone={backbone}", f"--batch_size={FLAGS.batch_size}",
                                      f"--warmup_steps={FLAGS.warmup_steps}", f"--steps={FLAGS.steps}"))
            print(json.dumps(theirs[-1]), flush=True)
        measurements += ours + theirs
        best_ours = max(ours, key=lambda result: result["pairs_per_s"])
        best = max(theirs, key=lambda result: result["pairs_per_s"])
        cpu = "" if best["workers_cpu_s"] is None else (
            f", {best['main_cpu_s'] / best['steps']:.2f} + {best['workers_cpu_s'] / best['steps']:.2f}")
        rounds = [" / ".join(f"{result['pairs_per_s']:.1f}" for result in side) for side in (ours, theirs)]
        lines.append(
            f"| {backbone} | {rounds[0]} | {rounds[1]} | {best_ours['pairs_per_s']:.1f} "
            f"| {best['pairs_per_s']:.1f} | {best_ours['pairs_per_s'] / best['pairs_per_s']:.2f} "
            f"| {best['loader_wait_percent']:.1f}%{cpu} | {best_ours['peak_mb']:.0f} / {best['peak_mb']:.0f} "
            f"(+ {best['worker_peak_mb'] or 0:.0f}) |")
        print(lines[-1], flush=True)
    text = (f"{hardware_line()} Lightly's side: {python}, lightly {versions['lightly']}, PyTorch "
            f"{versions['torch']}, torchvision {versions['torchvision']}, {theirs[-1]['threads']} PyTorch threads, "
            f"{theirs[-1]['num_workers']} DataLoader workers.\n"
            f"Batch {FLAGS.batch_size}, {FLAGS.steps} timed steps after {FLAGS.warmup_steps} warm-up steps, each "
            f"side in its own process, end to end on the CIFAR-10 training images: ours, recipe {FLAGS.peer_recipe} "
            f"through our tf.data pipeline and augmentation (fused BatchNorm, XLA off); lightly's, BYOL as its "
            f"CIFAR-10 benchmark (BYOLTransform at 32 px without blur, DataLoader, projection "
            f"{theirs[-1]['projection_dims']}, prediction {theirs[-1]['prediction_dims']}, EMA 0.99, SGD 0.06) on "
            f"the same ResNet (benchmarks/throughput/torch_peer.py).\n"
            f"Command: python benchmarks/throughput/benchmark.py {' '.join(sys.argv[1:])}\n\n" + "\n".join(lines)
            + "\n\nEvery measurement, per backbone, ours then lightly's:\n\n```\n"
            + "\n".join(json.dumps(result) for result in measurements) + "\n```")
    print_and_write(text)


def report_onednn_kernels():
    """Prints (and writes to --output) oneDNN's time per primitive kind in
    our step (one inter-op thread) and the peer's (first --peer_modes mode),
    per backbone, from `ONEDNN_VERBOSE` logs."""
    from step_timing import onednn_kernel_times

    mode = FLAGS.peer_modes[0]
    # One inter-op thread: TensorFlow otherwise runs independent ops side by
    # side on the same cores, and each kernel's wall time then includes the
    # other's; PyTorch's eager step runs one kernel at a time. oneDNN on even
    # where the user turned it off: the mode measures its kernels.
    ours_environment = {"ONEDNN_VERBOSE": "1", "TF_NUM_INTEROP_THREADS": "1", "TF_ENABLE_ONEDNN_OPTS": "1"}
    steps_run = FLAGS.warmup_steps + FLAGS.steps
    sections = []
    for backbone in FLAGS.backbones:
        ours, ours_output = run_in_subprocess(
            peer_comparison_config(backbone, xla=False, batchnorm="fused"),
            environment=ours_environment, with_output=True)
        theirs, theirs_output = run_in_subprocess(
            {"backbone": backbone, "mode": mode}, flag="single_peer",
            environment={"ONEDNN_VERBOSE": "1"}, with_output=True)
        kernels = [onednn_kernel_times(ours_output, steps_run), onednn_kernel_times(theirs_output, steps_run)]
        lines = [f"| {backbone}: oneDNN primitive | ours: ms per step (calls) | PyTorch {mode}: ms per step (calls) "
                 f"| ours, implementations | PyTorch, implementations |", "|---|---|---|---|---|"]
        for name in dict.fromkeys(list(kernels[0]) + list(kernels[1])):
            cells = [f"{k[name]['ms']:.1f} ({k[name]['calls']:g})" if name in k else "-" for k in kernels]
            names = [", ".join(k[name]["implementations"]) if name in k else "-" for k in kernels]
            lines.append(f"| {name} | {cells[0]} | {cells[1]} | {names[0]} | {names[1]} |")
        totals = [sum(entry["ms"] for entry in k.values()) for k in kernels]
        lines.append(f"| all oneDNN primitives | {totals[0]:.1f} | {totals[1]:.1f} | | |")
        lines.append(f"| the whole step, timed steps (wall) | {ours['step_ms']:.1f} | {theirs['step_ms']:.1f} | | |")
        sections.append("\n".join(lines))
        print(sections[-1], flush=True)
    text = (f"{hardware_line()} Batch {FLAGS.batch_size}, {FLAGS.warmup_steps} warm-up and {FLAGS.steps} timed "
            f"steps, synthetic input, recipe {FLAGS.peer_recipe}; our step with the fused BatchNorm kernel, XLA "
            f"off and one inter-op thread; oneDNN times are per step over all {steps_run} steps run, with "
            f"ONEDNN_VERBOSE=1 (which slows both steps slightly).\n"
            f"Command: python benchmarks/throughput/benchmark.py {' '.join(sys.argv[1:])}\n\n" + "\n\n".join(sections))
    print_and_write(text)


def report_profile():
    """Prints (and writes to --output) the op-time shares of `profile_step` per backbone."""
    from step_timing import profile_step

    profiles = {
        f"{backbone}, {kernel} BatchNorm": profile_step(
            backbone, FLAGS.batch_size, FLAGS.steps, recipe=FLAGS.peer_recipe,
            warmup_steps=FLAGS.warmup_steps, fused_batchnorm=kernel == "fused",
        )
        for backbone in FLAGS.backbones for kernel in FLAGS.batchnorm
    }
    categories = list(dict.fromkeys(name for profile in profiles.values() for name in profile["categories"]))
    lines = [f"| share of op time | {' | '.join(profiles)} |", "|---|" + "---|" * len(profiles)]
    for name in categories:
        shares = " | ".join(f"{100 * profile['categories'].get(name, 0.0):.1f}%" for profile in profiles.values())
        lines.append(f"| {name} | {shares} |")
    text = (f"{hardware_line()} Batch {FLAGS.batch_size}, {FLAGS.steps} profiled steps after "
            f"{FLAGS.warmup_steps} warm-up steps, synthetic input, recipe {FLAGS.peer_recipe}, XLA off.\n"
            f"Command: python benchmarks/throughput/benchmark.py {' '.join(sys.argv[1:])}\n\n" + "\n".join(lines))
    for backbone, profile in profiles.items():
        top = ", ".join(f"{name} {100 * share:.1f}%" for name, share in list(profile["op_types"].items())[:8])
        text += f"\n\n{backbone}, largest op types: {top}."
    print_and_write(text)


def report_view_batching():
    """Prints (and writes to --output) `view_batching_throughput` per backbone."""
    from view_batching import view_batching_throughput

    from keras_directcopy.data.datasets import get_dataset_spec

    size = get_dataset_spec(FLAGS.dataset).image_size
    lines = ["| backbone | views | pairs/s, per round | mean | vs two batches |", "|---|---|---|---|---|"]
    for backbone in FLAGS.backbones:
        throughput = view_batching_throughput(
            backbone, FLAGS.batch_size, FLAGS.warmup_steps, FLAGS.steps, rounds=FLAGS.rounds, image_size=size
        )
        baseline = sum(throughput["two_batches"]) / FLAGS.rounds
        for mode, rounds in throughput.items():
            mean = sum(rounds) / FLAGS.rounds
            lines.append(f"| {backbone} | {mode} | {' / '.join(f'{x:.1f}' for x in rounds)} | {mean:.1f} "
                         f"| {mean / baseline:.3f} |")
            print(lines[-1], flush=True)
    text = (f"{hardware_line()} Batch {FLAGS.batch_size} per view, {size} px, {FLAGS.steps} timed steps per "
            f"round after {FLAGS.warmup_steps} warm-up steps, synthetic input, fused BatchNorm, XLA off; the "
            f"online encoder's forward, backward and SGD update and the target encoder's forward pass.\n"
            f"Command: python benchmarks/throughput/benchmark.py {' '.join(sys.argv[1:])}\n\n" + "\n".join(lines))
    print_and_write(text)


def print_and_write(text):
    """Prints a result and, with --output, writes it there (atomically)."""
    from keras_directcopy.utils.files import atomic_write_text

    print(text)
    if FLAGS.output:
        atomic_write_text(FLAGS.output, text + "\n")


def hardware_line():
    """The machine: GPUs, or the CPU's model, AVX-512 and core count; the libraries."""
    import tensorflow as tf

    from keras_directcopy.utils.provenance import cpu_model

    gpus = tf.config.list_physical_devices("GPU")
    cpu = cpu_model()
    avx512 = {True: "with AVX-512", False: "without AVX-512", None: "AVX-512 unknown"}[cpu["avx512"]]
    name = ", ".join(part for part in (cpu["model"], cpu["family_model"], avx512) if part)
    hardware = f"{len(gpus)} GPU(s)" if gpus else f"CPU only, {os.cpu_count()} cores ({name})"
    from keras_directcopy.utils.onednn import tensorflow_uses_onednn

    versions = f"TensorFlow {tf.__version__} ({'with' if tensorflow_uses_onednn() else 'without'} oneDNN"
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        # oneDNN's kernels held to an older instruction set (both frameworks' oneDNN).
        versions += f", its kernels held to ONEDNN_MAX_CPU_ISA={os.environ['ONEDNN_MAX_CPU_ISA']}"
    versions += ")"
    if "jax" in FLAGS.backends:
        from importlib.metadata import version

        versions += f", JAX {version('jax')}, Keras {version('keras')}"
    if FLAGS.peer == "torch" or FLAGS.onednn_kernels:  # the lightly peer names its own PyTorch
        import torch

        versions += f", PyTorch {torch.__version__}"
        if os.environ.get("ATEN_CPU_CAPABILITY"):
            versions += f" (its own kernels held to ATEN_CPU_CAPABILITY={os.environ['ATEN_CPU_CAPABILITY']})"
    return f"Hardware: {hardware}; {versions}."


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from keras_directcopy.utils.backend import PRETRAINING_BACKENDS

    unknown_backends = set(FLAGS.backends) - set(PRETRAINING_BACKENDS)
    if unknown_backends:
        raise app.UsageError(
            f"--backends takes tensorflow and/or jax (the pretraining backends); got {', '.join(sorted(unknown_backends))}."
        )
    unknown_augmentations = set(FLAGS.augmentation) - {"auto", "batch", "image"}
    if unknown_augmentations:
        raise app.UsageError(
            f"--augmentation takes auto, batch and/or image; got {', '.join(sorted(unknown_augmentations))}."
        )
    unknown_kernels = set(FLAGS.batchnorm) - {"fused", "keras"}
    if unknown_kernels:
        raise app.UsageError(f"--batchnorm takes fused and/or keras; got {', '.join(sorted(unknown_kernels))}.")
    if FLAGS.augmenter_only:
        report_augmenter_throughput(FLAGS.dataset, FLAGS.input_size, FLAGS.images, FLAGS.repeats, FLAGS.view_size)
        return
    if FLAGS.single:
        from step_timing import measure

        config = json.loads(FLAGS.single)
        result = measure(
            config["backbone"], config["predictor"], config["input"], config["xla"],
            FLAGS.batch_size, FLAGS.warmup_steps, FLAGS.steps, FLAGS.dataset, FLAGS.data_dir,
            recipe=config.get("recipe"), fused_batchnorm=config.get("batchnorm", "fused") == "fused",
            steps_per_execution=config.get("steps_per_execution", 1),
            batched_augmentation={"batch": True, "image": False}.get(config.get("augmentation", "auto")),
        )
        print("RESULT " + json.dumps(result))
        return
    if FLAGS.single_peer:
        config = json.loads(FLAGS.single_peer)
        print("RESULT " + json.dumps(measure_peer(config["backbone"], config["mode"])))
        return
    if FLAGS.peer == "lightly":
        compare_with_lightly()
        return
    if FLAGS.peer:
        compare_with_peer()
        return
    if FLAGS.profile:
        report_profile()
        return
    if FLAGS.onednn_kernels:
        report_onednn_kernels()
        return
    if FLAGS.view_batching:
        report_view_batching()
        return
    from step_timing import table

    results = []
    for config in configurations():
        results.append(run_in_subprocess(config))
        print(json.dumps(results[-1]), flush=True)
    header = (
        f"{hardware_line()} Batch {FLAGS.batch_size}, "
        f"{FLAGS.steps} timed steps after {FLAGS.warmup_steps} warm-up steps. Memory: "
        f"{results[0]['memory_kind'] if results else ''}.\n"
        f"Command: python benchmarks/throughput/benchmark.py {' '.join(sys.argv[1:])}\n\n"
    )
    text = header + table(results)
    print_and_write(text)


if __name__ == "__main__":
    app.run(main)
