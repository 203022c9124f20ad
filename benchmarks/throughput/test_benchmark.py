"""benchmarks/throughput/benchmark.py runs and prints its table, and its --augmenter_only
mode its lines (smoke tests: the numbers themselves are the benchmark's
business, not the tests')."""

import os
import re
import subprocess
import sys

import pytest

from tests.test_pretrain import REPO_ROOT, data_dir  # noqa: F401  (fixture)


@pytest.mark.slow
def test_benchmark_prints_a_table(data_dir, tmp_path):  # noqa: F811
    output = tmp_path / "benchmark.md"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "throughput" / "benchmark.py"), f"--data_dir={data_dir}",
         "--backbones=resnet20", "--predictors=directcopy", "--inputs=synthetic,real",
         "--backends=tensorflow,jax", "--xla=off", "--batch_size=16", "--warmup_steps=1",
         "--steps=2", f"--output={output}"],
        capture_output=True, text=True, timeout=900, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = output.read_text()
    assert "Hardware: CPU only" in table and "Batch 16, 2 timed steps" in table
    assert "AVX-512" in table  # the CPU is named: speeds differ several-fold between machines
    assert "JAX 0." in table  # the versions of both backends
    rows = {
        (cells[0], cells[3]): cells
        for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table.splitlines())
        if len(cells) > 3 and cells[1] == "resnet20"
    }
    assert set(rows) == {(backend, kind) for backend in ("tensorflow", "jax") for kind in ("synthetic", "real")}
    tensorflow_real, jax_real = rows["tensorflow", "real"], rows["jax", "real"]
    assert tensorflow_real[4] == "off" and tensorflow_real[5] == "fused"  # the kernel training uses by default
    assert jax_real[4] == "on" and jax_real[5] == "keras"  # JAX: XLA, Keras' BatchNorm
    for cells in (tensorflow_real, jax_real):
        assert float(cells[6]) > 0  # pairs/s
        assert cells[8].endswith("%") and cells[9].endswith("%")  # real/synthetic, update cost


def test_steps_per_execution_is_timed_per_step():
    from step_timing import measure

    result = measure("resnet20", "directcopy", "synthetic", False, batch_size=8, warmup_steps=2, steps=4,
                     dataset="cifar10", data_dir=None, recipe="cifar10_resnet20", steps_per_execution=2)
    assert result["steps_per_execution"] == 2
    assert result["pairs_per_s"] == pytest.approx(8 / (result["step_ms"] / 1000))
    assert 0 < result["step_ms"] < 60_000
    with pytest.raises(ValueError, match="multiples of steps_per_execution=2"):
        measure("resnet20", "directcopy", "synthetic", False, batch_size=8, warmup_steps=2, steps=3,
                dataset="cifar10", data_dir=None, recipe="cifar10_resnet20", steps_per_execution=2)


def test_the_table_checks_the_targets():
    from step_timing import table

    def result(predictor, input_kind, pairs_per_s, update_percent):
        return dict(backbone="resnet20", predictor=predictor, input=input_kind, xla=False,
                    batchnorm="fused", pairs_per_s=pairs_per_s, step_ms=1000 * 16 / pairs_per_s,
                    update_percent=update_percent, peak_mb=900.0, memory_kind="process peak RSS")

    rows = table([
        result("directcopy", "synthetic", 100.0, 0.5), result("directcopy", "real", 80.0, 1.5),
        result("linear", "synthetic", 120.0, None),
    ]).splitlines()[2:]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert cells[0][0] == "tensorflow"  # a result without a backend: measured before JAX could train
    assert cells[0][5] == "fused"
    assert cells[0][-1] == "ok" and cells[0][9] == "0.50%"
    assert cells[1][8] == "80%"  # real / synthetic
    assert cells[1][-1] == "MISSED: real < 90% of synthetic; MISSED: DirectCopy update >= 1%"
    assert cells[2][9] == "" and cells[2][-1] == "ok"  # no update to time


def test_the_table_names_an_explicit_augmentation_path():
    from step_timing import table

    rows = [
        dict(backbone="resnet20", predictor="directcopy", input=kind, xla=False, batchnorm="fused",
             augmentation=augmentation, pairs_per_s=pairs, step_ms=100.0, update_percent=0.2,
             peak_mb=900.0, memory_kind="process peak RSS")
        for kind, augmentation, pairs in [
            ("synthetic", "auto", 100.0), ("real", "auto", 95.0), ("real", "batch", 96.0), ("real", "image", 89.0)
        ]
    ]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in table(rows).splitlines()[2:]]
    assert [row[3] for row in cells] == ["synthetic", "real", "real, by batch", "real, per image"]
    assert [row[8] for row in cells] == ["", "95%", "96%", "89%"]  # each against the one synthetic row
    assert cells[3][-1] == "MISSED: real < 90% of synthetic"


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags, size, modes",
    [
        # STL-10 from 120 px: crops are shrunk with antialiasing, so one image at a time only.
        (["--dataset=stl10", "--input_size=120", "--images=300"], "120->96", ["per image"]),
        (["--dataset=cifar10", "--images=600"], "32->32", ["per image", "by batch"]),
    ],
)
def test_augmenter_only_prints_pairs_per_second(flags, size, modes):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "throughput" / "benchmark.py"), "--augmenter_only",
         "--repeats=2", *flags],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    dataset = flags[0].split("=")[1]
    line = (rf"^{dataset} {size} px, (per image|by batch): (\d+) pairs/s \((\d+) pairs per CPU-second\), "
            r"\d+ CPU core\(s\) usable$")
    lines = re.findall(line, result.stdout, re.MULTILINE)
    assert [mode for mode, _, _ in lines] == modes * 2
    assert all(int(wall) > 0 and int(cpu) > 0 for _, wall, cpu in lines)


def test_the_profile_files_every_op_and_finds_the_convolutions():
    from step_timing import OTHER_CATEGORY, profile_step

    profile = profile_step("resnet20", batch_size=8, steps=2, warmup_steps=1)
    shares = profile["categories"]
    assert profile["op_seconds"] > 0
    assert sum(shares.values()) == pytest.approx(1.0) and sum(profile["op_types"].values()) == pytest.approx(1.0)
    # A ResNet step is mostly convolutions and BatchNorm, whatever the machine.
    assert shares["convolutions"] > 0.2 and shares["BatchNorm"] > 0.05
    assert shares.get(OTHER_CATEGORY, 0.0) < 0.2


def test_the_peer_table_compares_best_with_best():
    from step_timing import peer_table

    ours = [dict(pairs_per_s=400.0, xla=False, batchnorm="fused", peak_mb=1500.0),
            dict(pairs_per_s=300.0, xla=False, batchnorm="keras", peak_mb=1400.0)]
    theirs = [dict(pairs_per_s=250.0, mode="channels_last", peak_mb=1600.0),
              dict(pairs_per_s=320.0, mode="compile", peak_mb=1450.0)]
    row = peer_table([("resnet20", ours, theirs)]).splitlines()[2]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "400.0 (off, fused), 300.0 (off, keras)"
    assert cells[3:] == ["400.0", "320.0 (compile)", "1.25", "1500 / 1450"]


def test_view_batching_prints_each_mode_against_two_batches(tmp_path):
    output = tmp_path / "view_batching.md"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "throughput" / "benchmark.py"), "--view_batching",
         "--backbones=resnet20", "--batch_size=4", "--warmup_steps=1", "--steps=1", "--rounds=1",
         f"--output={output}"],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = output.read_text()
    assert "Hardware: CPU only" in table and "Batch 4 per view, 32 px" in table
    rows = [line for line in table.splitlines() if line.startswith("| resnet20 |")]
    assert [row.split("|")[2].strip() for row in rows] == [
        "two_batches", "one_batch", "one_batch_per_view_statistics"]
    assert rows[0].rstrip(" |").endswith("1.000")  # the baseline against itself


def test_onednn_kernel_times_reads_tensorflows_own_verbose_log():
    """On a real oneDNN log: TensorFlow's CPU convolutions run in oneDNN,
    which logs each execution; three calls of one convolution are summed
    into one entry."""
    from step_timing import onednn_kernel_times

    program = (
        "import tensorflow as tf\n"
        "convolve = tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, 'SAME'))\n"
        "x, w = tf.random.normal((4, 16, 16, 8)), tf.random.normal((3, 3, 8, 16))\n"
        "for _ in range(3):\n"
        "    convolve(x, w).numpy()\n"
        "print('not a oneDNN line,exec,cpu,convolution,x,forward_training,9.0')\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                                 # TensorFlow leaves oneDNN off on CPUs without AVX-512 VNNI/BF16.
                                 "TF_ENABLE_ONEDNN_OPTS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    kernels = onednn_kernel_times(result.stdout, steps=3)
    forward = kernels["convolution forward_training"]
    assert forward["calls"] == 1  # per step: three calls over three steps
    assert 0 < forward["ms"] < 9.0 / 3  # the line that is not oneDNN's is left out
    assert forward["implementations"] and all(":" in name for name in forward["implementations"])
    assert list(kernels) == sorted(kernels, key=lambda name: kernels[name]["ms"], reverse=True)


@pytest.mark.slow
def test_onednn_kernels_prints_both_steps_side_by_side(tmp_path):
    output = tmp_path / "onednn.md"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "throughput" / "benchmark.py"), "--onednn_kernels",
         "--backbones=resnet20", "--batch_size=4", "--warmup_steps=1", "--steps=1", f"--output={output}"],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = output.read_text()
    assert "Hardware: CPU only" in table and "PyTorch 2." in table and "one inter-op thread" in table
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")]
                                          for line in table.splitlines() if line.startswith("| "))}
    forward = rows["convolution forward_training"]
    # ResNet-20: 19 convolutions, run on two views by the online and the target network.
    assert forward[1].endswith("(76)") and forward[2].endswith("(76)")
    assert float(rows["all oneDNN primitives"][1]) > 0 and float(rows["all oneDNN primitives"][2]) > 0
