"""scripts/pretrain.py end to end, as subprocesses, on a prepared slice of the
real CIFAR-10 (through real tfds): one device, two mirrored replicas, resume
after kill -9, a non-finite loss, and bad flags; the default recipe (the
shipped preset's, without --config), the plan and the time estimate; and
its flags."""

import dataclasses
import importlib.util
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import keras
import pytest
import tensorflow as tf
from absl import flags

from keras_directcopy import configs
from keras_directcopy.training import preset_recipes
from keras_directcopy.data import offline as offline_data
from keras_directcopy.models.predictors import DEFAULT_EPS
from keras_directcopy.presets import registration
from keras_directcopy.training import config_flags
from keras_directcopy.training.run_log import read_history
from tests.helpers import kill_when_written

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = REPO_ROOT.parent / "shared" / "data" / "cifar10"
SCRIPT = str(REPO_ROOT / "scripts" / "pretrain.py")
# 256 training images, batch 32: 8 steps per epoch unless limited.
SMALL_RUN = [
    "--config=quickstart", "--backbone=resnet20", "--width_multiplier=0.25",
    "--batch_size=32", "--knn_k=20", "--verbose=2",
]

QUICKSTART_LR = configs.CONFIGS["quickstart"].lr


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tfds")
    offline_data.prepare_cifar10(str(SHARED_CIFAR10), str(directory), max_examples_per_split=256)
    return str(directory)


def run_pretrain(*flags, timeout=300, environment=None):
    return subprocess.run(
        [sys.executable, SCRIPT, *flags], capture_output=True, text=True, timeout=timeout,
        cwd=REPO_ROOT, env={**os.environ, "CUDA_VISIBLE_DEVICES": "", **(environment or {})},
    )


def read_run(output_dir):
    return json.loads((Path(output_dir) / "run.json").read_text())


@pytest.fixture(scope="module")
def pretrain_script():
    # The script imports its neighbour encoder_flags.py, as `python scripts/pretrain.py` finds it.
    sys.path.insert(0, os.path.dirname(SCRIPT))
    spec = importlib.util.spec_from_file_location("pretrain_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # absl attributes a flag to the module that defines it through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]
    sys.path.remove(os.path.dirname(SCRIPT))


def test_the_script_has_its_own_flags_and_the_flag_of_every_config_field(pretrain_script):
    values = flags.FlagValues()
    pretrain_script.define_flags(values)  # absl refuses a flag defined twice
    fields = [field.name for field in dataclasses.fields(configs.PretrainConfig)]
    assert set(fields) < set(values) and {"config", "output_dir", "strategy"} <= set(values)
    for name in fields:
        assert values[name].help.endswith(config_flags.FIELD_DOCS[name])
    # --help lists the key flags of the script: the field flags are among them.
    listed = {flag.name for flag in values.get_key_flags_for_module("pretrain_script")}
    assert listed == set(values)
    values(["pretrain.py", "--output_dir=unused", "--config=stl10_resnet18", "--eps=0.2"])
    config = config_flags.config_from_flags(values.config, values)
    assert config == dataclasses.replace(configs.CONFIGS["stl10_resnet18"], eps=0.2)


def test_the_command_users_type_trains_the_shipped_cifar10_recipe_not_the_quickstart(pretrain_script):
    """`pretrain.py --strategy=mirrored`: no --config, so the recipe of the
    CIFAR-10 preset (90 epochs), which the recorded command names."""
    values = flags.FlagValues()
    pretrain_script.define_flags(values)
    values(["pretrain.py", "--output_dir=runs/x", "--strategy=mirrored"])
    assert values.config is None
    recipe = config_flags.recipe_from_flags(values.config, values)
    assert recipe.config == preset_recipes.preset_config("cifar10") and recipe.config.epochs == 90
    assert recipe.config != configs.CONFIGS["quickstart"]
    assert pretrain_script.recorded_command(["--output_dir=runs/x", "--strategy=mirrored"], recipe.flags) == (
        "python scripts/pretrain.py --config=cifar10_resnet20 --ema_schedule=cosine --target_init=copy "
        "--projector_bn_affine --update_order=before_predict --output_dir=runs/x --strategy=mirrored")


def preset_names():
    from keras_directcopy.presets import zoo

    return [preset["name"] for preset in zoo.list_pretrained()]


@pytest.mark.parametrize("name", preset_names())
def test_each_presets_recipe_is_the_one_its_train_command_trains(pretrain_script, name):
    """The recipe a preset records (the default for its dataset) trains what
    its train_command trains, and the architecture, size and epochs it ships."""
    from keras_directcopy.presets.zoo import get_preset

    preset = get_preset(name)
    values = flags.FlagValues()
    pretrain_script.define_flags(values)
    values(["pretrain.py", *shlex.split(preset["train_command"])[2:]])
    assert values.config is not None, "a preset's train_command names its --config"
    trained = configs.recipe_fields(config_flags.config_from_flags(values.config, values))
    recorded = configs.recipe_fields(preset_recipes.preset_config(preset))
    # The command names where its data was (a folder on one machine).
    trained.pop("dataset"), recorded.pop("dataset")
    assert recorded == trained
    assert (recorded["backbone"], recorded["width_multiplier"], recorded["epochs"]) == (
        preset["backbone"], preset["backbone_kwargs"]["width_multiplier"], preset["epochs"])
    assert recorded["image_size"] in (None, preset["input_shape"][0])


@pytest.mark.slow
def test_pretrain_one_device(data_dir, tmp_path):
    result = run_pretrain(*SMALL_RUN, f"--data_dir={data_dir}", f"--output_dir={tmp_path}",
                          "--epochs=2", "--knn_every=1", "--strategy=one_device", "--jit_compile=true")
    assert result.returncode == 0, result.stderr[-3000:]
    run = read_run(tmp_path)
    assert run["steps"] == 2 * 8 and run["steps_per_epoch"] == 8 and run["num_replicas"] == 1
    assert run["strategy"] == "one_device"
    assert run["config"]["predictor"] == "directcopy" and run["config"]["epochs"] == 2
    metrics = run["final_metrics"]
    assert 0.0 <= metrics["knn_accuracy"] <= 1.0 and metrics["loss"] > 0
    assert {"collapse_std", "lr", "tau", "pred_eig_max", "pred_eff_rank"} <= set(metrics)
    # The eps the predictor used, resolved when the flags leave it unset.
    configured = run["config"]["eps"]
    assert run["predictor_eps"] == (DEFAULT_EPS["directcopy"] if configured is None else configured)
    assert run["hardware"]["cpu_count"] and run["git_commit"] and run["wall_time_s"] > 0
    assert run["cpu_time_s"] > 0 and run["invocations"] == 1 and run["epochs_done"] == 2
    assert "--epochs=2" in run["commands"][0] and "scripts/pretrain.py" in run["commands"][0]
    history = read_history(tmp_path)
    assert [record["epoch"] for record in history] == [1, 2]
    assert [record["step"] for record in history] == [8, 16]
    assert history[-1]["knn_accuracy"] == metrics["knn_accuracy"]
    assert history[0]["cpu_time_s"] < history[1]["cpu_time_s"] <= run["cpu_time_s"]
    assert "kNN accuracy (k=20) on the test split" in result.stdout
    assert (tmp_path / "encoder.keras").exists() and (tmp_path / "encoder.weights.h5").exists()
    assert (tmp_path / "encoder.config.json").exists()  # what a preset ships with the weights
    # Keras' TensorBoard callback writes the learning rate itself.
    tags = {value.tag for path in (tmp_path / "tensorboard").rglob("events.out.tfevents*")
            for record in tf.data.TFRecordDataset(str(path))
            for value in tf.compat.v1.Event.FromString(record.numpy()).summary.value}
    assert {"epoch_loss", "epoch_learning_rate"} <= tags and "epoch_lr" not in tags
    assert not list(tmp_path.rglob(".partial*"))


@pytest.mark.slow
def test_without_config_a_run_trains_and_records_its_datasets_preset_recipe(data_dir, tmp_path):
    """No --config: the CIFAR-10 preset's recipe (its budget cut by flags),
    recorded in the command; the plan before the first step, and one time
    estimate after the timed steps."""
    result = run_pretrain(f"--data_dir={data_dir}", f"--output_dir={tmp_path}", "--width_multiplier=0.25",
                          "--batch_size=32", "--epochs=2", "--knn_every=0", "--verbose=2")
    assert result.returncode == 0, result.stderr[-3000:]
    run = read_run(tmp_path)
    expected = preset_recipes.preset_config("cifar10", data_dir=data_dir, width_multiplier=0.25, batch_size=32, epochs=2,
                                     knn_every=0)
    assert run["config"] == dataclasses.asdict(expected)
    assert (expected.ema_schedule, expected.target_init, expected.projector_bn_affine) == ("cosine", "copy", True)
    assert run["commands"][0].startswith(
        "python scripts/pretrain.py --config=cifar10_resnet20 --ema_schedule=cosine --target_init=copy "
        "--projector_bn_affine --update_order=before_predict --data_dir=")
    plan = result.stdout.split("Plan:\n")[1].split("Epoch 1/2")[0]
    assert plan.splitlines() == [
        "  recipe:       --config=cifar10_resnet20 --ema_schedule=cosine --target_init=copy --projector_bn_affine "
        "--update_order=before_predict (no --config: the recipe of preset directcopy_resnet20_cifar10, the "
        "default for this dataset)",
        "  dataset:      cifar10 (256 images, train)",
        f"  backbone:     resnet20, width 0.25 ({run['encoder_parameters']:,} parameters)",
        "  image size:   32 x 32 px",
        "  epochs:       2",
        "  steps:        8 per epoch, 16 in all",
        "  global batch: 32",
        "  strategy:     default, 1 replica",
        f"  output dir:   {tmp_path}",
    ]
    # Steps 1-3 trace and are not timed; steps 4-7 are; 9 of the 16 remain.
    (estimate,) = re.findall(r"^Timing: .*$", result.stdout, re.MULTILINE)
    assert re.fullmatch(r"Timing: [0-9.e+-]+ s per step over 4 steps; the 9 steps that remain take about "
                        r"\d.*, besides the kNN evaluations and backups at epoch ends\.", estimate), estimate
    assert result.stdout.index("Epoch 1/2") < result.stdout.index(estimate) < result.stdout.index("Epoch 2/2")


@pytest.mark.slow
def test_without_config_a_folder_of_ones_own_images_is_refused_in_one_line(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    result = run_pretrain(f"--dataset=folder:{images}", f"--output_dir={tmp_path / 'run'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: --dataset=folder:{images} is a folder of your own images" in result.stderr
    assert "pass --config=NAME, one of quickstart," in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_pretrain_mirrored_over_two_logical_cpus(data_dir, tmp_path):
    result = run_pretrain(*SMALL_RUN, f"--data_dir={data_dir}", f"--output_dir={tmp_path}",
                          "--strategy=mirrored", "--logical_cpus=2", "--epochs=1",
                          "--steps_per_epoch=3", "--predictor=directpred")
    assert result.returncode == 0, result.stderr[-3000:]
    run = read_run(tmp_path)
    assert run["strategy"] == "mirrored" and run["num_replicas"] == 2
    assert run["steps"] == 3
    assert run["final_metrics"]["pred_eig_max"] == pytest.approx(1.01, rel=1e-4)
    assert run["config"]["eps"] is None and run["predictor_eps"] == DEFAULT_EPS["directpred"]


@pytest.mark.slow
def test_pretrain_on_jax_data_parallel_over_two_devices(data_dir, tmp_path):
    # JAX's CPU platform split into two devices; each global batch of 32 is
    # sharded over them by keras.distribution.DataParallel.
    two_devices = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    result = run_pretrain(*SMALL_RUN, f"--data_dir={data_dir}", f"--output_dir={tmp_path}",
                          "--backend=jax", "--strategy=data_parallel", "--epochs=1",
                          "--steps_per_epoch=3", "--knn_every=1", environment=two_devices)
    assert result.returncode == 0, result.stderr[-3000:]
    run = read_run(tmp_path)
    assert run["backend"] == "jax" and run["strategy"] == "data_parallel" and run["num_replicas"] == 2
    assert run["steps"] == 3
    assert "  strategy:     data_parallel, 2 replicas\n" in result.stdout
    assert "  global batch: 32 (16 per replica)\n" in result.stdout
    metrics = run["final_metrics"]
    assert 0.0 <= metrics["knn_accuracy"] <= 1.0 and metrics["loss"] > 0
    assert metrics["pred_eig_max"] == pytest.approx(1 + DEFAULT_EPS["directcopy"], rel=1e-4)
    # The encoder trained on JAX loads on TensorFlow, the default backend.
    encoder = keras.saving.load_model(tmp_path / "encoder.keras")
    assert encoder.output_shape == (None, 16)
    # Re-running the finished command resumes from the backup and trains nothing.
    again = run_pretrain(*SMALL_RUN, f"--data_dir={data_dir}", f"--output_dir={tmp_path}",
                         "--backend=jax", "--strategy=data_parallel", "--epochs=1",
                         "--steps_per_epoch=3", "--knn_every=1", environment=two_devices)
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_run(tmp_path)["steps"] == 3 and read_run(tmp_path)["invocations"] == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend, strategy, message",
    [
        ("jax", "mirrored", "--strategy=mirrored is a tf.distribute strategy, which needs the TensorFlow backend"),
        ("tensorflow", "data_parallel", "--strategy=data_parallel is keras.distribution.DataParallel, for the JAX backend"),
    ],
)
def test_a_strategy_of_the_other_backend_is_refused(data_dir, tmp_path, backend, strategy, message):
    result = run_pretrain(*SMALL_RUN, f"--data_dir={data_dir}", f"--output_dir={tmp_path}",
                          f"--backend={backend}", f"--strategy={strategy}", "--epochs=1")
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run.json").exists() and not (tmp_path / "backup").exists()


def test_a_backend_that_cannot_pretrain_is_refused_in_one_line(tmp_path):
    result = run_pretrain(f"--output_dir={tmp_path}", environment={"KERAS_BACKEND": "torch"})
    assert result.returncode == 1
    assert "pretraining runs on the tensorflow and jax Keras backends, and KERAS_BACKEND=torch" in result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_resume_after_kill_minus_nine(data_dir, tmp_path):
    flags = [*SMALL_RUN, f"--data_dir={data_dir}", f"--output_dir={tmp_path}",
             "--epochs=3", "--save_freq=2", "--knn_every=0", "--jit_compile=false"]
    backup = tmp_path / "backup" / "backup.weights.h5"
    kill_when_written([sys.executable, SCRIPT, *flags], backup, REPO_ROOT)
    assert backup.exists(), "no backup was written before the kill"
    assert not (tmp_path / "run.json").exists(), "the first run finished before it was killed"

    result = run_pretrain(*flags)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed_at = int(result.stdout.split("Resuming from the backup at step ")[1].split()[0])
    assert 2 <= resumed_at < 24 and resumed_at % 2 == 0
    # The plan counts the steps that remain, and so does the estimate.
    assert f"  steps:        8 per epoch, 24 in all; {24 - resumed_at} to run, from step {resumed_at} (resumed)\n" in (
        result.stdout)
    estimates = re.findall(r"^Timing: .* the (\d+) steps that remain", result.stdout, re.MULTILINE)
    assert len(estimates) <= 1 and all(int(left) < 24 - resumed_at for left in estimates)
    assert estimates or resumed_at > 16, "a whole epoch to time, yet no estimate"
    # The progress bar counts the epochs of the whole run, also for the rest
    # of the epoch the kill interrupted.
    epochs_shown = re.findall(r"^Epoch (\d+)/(\d+)$", result.stdout, re.MULTILINE)
    assert epochs_shown == [(str(epoch), "3") for epoch in range(resumed_at // 8 + 1, 4)]
    run = read_run(tmp_path)
    assert run["steps"] == 3 * 8  # no step redone, none missing
    # The cost and the history cover both invocations, not only the last.
    assert run["invocations"] == 2 and len(run["commands"]) == 2
    assert run["git_commits"] == [run["git_commit"]] * 2
    # Both invocations ran on this machine: one part, holding the whole cost.
    (part,) = run["hardware_parts"]
    assert part["invocations"] == [1, 2] and part["hardware"]["cpu_model"] == run["hardware"]["cpu_model"]
    assert part["first_step"] == 0 and part["cpu_time_s"] == run["cpu_time_s"]
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert [entry["first_step"] for entry in progress["invocations"]] == [0, resumed_at]
    history = read_history(tmp_path)
    assert [record["step"] for record in history] == [8, 16, 24]
    assert run["wall_time_s"] >= history[-1]["wall_time_s"] > 0

    # Re-running a finished command trains nothing more.
    again = run_pretrain(*flags)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resuming from the backup at step 24 of 24" in again.stdout
    assert read_run(tmp_path)["steps"] == 24


@pytest.mark.slow
def test_stop_at_epoch_ends_a_part_of_the_run_on_the_full_schedule(data_dir, tmp_path):
    """A run in parts: the first stops early on the full schedule; a resume
    with another recipe is refused and changes nothing; the run then resumes
    from another folder with other monitoring, which is allowed."""
    output_dir = tmp_path / "run"
    flags = [*SMALL_RUN, f"--data_dir={data_dir}", "--epochs=3", "--jit_compile=false"]
    part = run_pretrain(*flags, f"--output_dir={output_dir}", "--knn_every=5", "--stop_at_epoch=1")
    assert part.returncode == 0, part.stderr[-3000:]
    assert "Stopped after epoch 1 of 3 (--stop_at_epoch)" in part.stdout
    assert "  epochs:       3 (this run stops after epoch 1: --stop_at_epoch)\n" in part.stdout
    assert "  steps:        8 per epoch, 24 in all; 8 to run\n" in part.stdout
    # Timed from the end of step 3 to the end of step 7: the 1 step that remains of this part.
    assert "over 4 steps; the 1 step that remains takes about" in part.stdout
    run = read_run(output_dir)
    assert (run["steps"], run["epochs_done"], run["config"]["epochs"]) == (8, 1, 3)
    # The stopping epoch is evaluated, though not a multiple of --knn_every.
    assert 0.0 <= run["final_metrics"]["knn_accuracy"] <= 1.0
    # The learning rate follows the 3-epoch cosine (no warmup in quickstart), not a 1-epoch one.
    assert read_history(output_dir)[0]["lr"] == pytest.approx(QUICKSTART_LR * 0.5 * (1 + math.cos(math.pi * 8 / 24)))

    saved = {path: path.read_bytes() for path in output_dir.rglob("*") if path.is_file()}
    other = run_pretrain(*flags, f"--output_dir={output_dir}", "--knn_every=5", "--lr=0.1")
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert (f"holds a run trained with other settings than this command's: --lr {QUICKSTART_LR:g} in the run, "
            "0.1 here") in other.stderr
    assert {path: path.read_bytes() for path in output_dir.rglob("*") if path.is_file()} == saved

    moved = tmp_path / "moved"
    output_dir.rename(moved)
    rest = run_pretrain(*flags, f"--output_dir={moved}", "--knn_every=1", "--verbose=0")
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert "Resuming from the backup at step 8 of 24" in rest.stdout
    # Quiet: the plan, but no progress and no time estimate.
    assert "\nPlan:\n" in rest.stdout and "Timing:" not in rest.stdout and "Epoch 2/3" not in rest.stdout
    run = read_run(moved)
    assert (run["steps"], run["epochs_done"], run["invocations"]) == (24, 3, 2)
    assert "--stop_at_epoch" not in run["commands"][0] and run["commands"][0] != run["commands"][1]
    # Both parts recorded one recipe, so the run can be registered as a preset.
    recipes = [entry["recipe"] for entry in json.loads((moved / "progress.json").read_text())["invocations"]]
    assert recipes[0] == recipes[1] == run["recipe"] and run["recipe_recorded"] == [True, True]
    assert run["recipe"]["lr"] == QUICKSTART_LR and "knn_every" not in run["recipe"]
    registration.check_one_recipe(str(moved), run)


def test_the_recorded_command_leaves_out_stop_at_epoch(pretrain_script):
    for argv in (["--epochs=9", "--stop_at_epoch=2", "--output_dir=x"],
                 ["--epochs=9", "--stop_at_epoch", "2", "--output_dir=x"]):
        assert pretrain_script.recorded_command(argv) == "python scripts/pretrain.py --epochs=9 --output_dir=x"


def test_non_finite_loss_stops_with_a_clear_message(data_dir, tmp_path):
    """In-process: `pretrain` raises the error the script prints (its error
    path is run end to end by the bad-value test below)."""
    from keras_directcopy.training.callbacks import NonFiniteLossError
    from keras_directcopy.training.loop import pretrain

    config = configs.get_config(
        "quickstart", backbone="resnet20", width_multiplier=0.25, batch_size=32, knn_k=20,
        dataset="cifar10", data_dir=data_dir, epochs=2, lr=1e30, warmup_epochs=0.0, knn_every=0,
    )
    with pytest.raises(NonFiniteLossError) as error:
        pretrain(config, str(tmp_path), verbose=0)
    assert re.search(r"the loss became (nan|inf|-inf) at step \d+\. Lower --lr \(now 1e\+30\)", str(error.value))
    assert not (tmp_path / "encoder.keras").exists()


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--backbone=resnet19", "value should be one of <resnet18|resnet34|resnet50|resnet20>"),
        ("--strategy=horovod", "value should be one of <default|one_device|mirrored|multi_worker|tpu|data_parallel>"),
        ("--predictor=directcpy", "value should be one of <directcopy|directpred"),
        ("--lr=-0.1", "--lr=-0.1 is invalid: it must be a number > 0."),
        ("--batch_size=0", "--batch_size=0 is invalid: it must be an integer >= 1."),
        ("--image_size=0", "--image_size=0 is invalid: it must be an integer >= 8 (or unset)."),
        ("--eps=-0.5", "--eps=-0.5 is invalid: it must be a number >= 0 (or unset)."),
        ("--ema=1.0", "--ema=1.0 is invalid: it must be a number >= 0 and < 1."),
        ("--save_freq=0", "--save_freq='0' is invalid: it must be 'epoch' or a positive number of steps."),
        ("--mixed_precision=float8", "value should be one of <mixed_float16|mixed_bfloat16>"),
    ],
)
def test_bad_flags_are_rejected_clearly(pretrain_script, flag, message):
    """The script's flags, parsed in-process: an enum flag fails in absl's
    parser, a field value in the recipe's check, both before any data is read."""
    values = flags.FlagValues()
    pretrain_script.define_flags(values)
    with pytest.raises((flags.Error, ValueError)) as error:
        values(["pretrain.py", "--output_dir=unused", flag])
        config_flags.config_from_flags(values.config, values)
    assert message in str(error.value)


@pytest.mark.slow
def test_the_script_reports_a_bad_value_in_one_line_and_writes_nothing(data_dir, tmp_path):
    result = run_pretrain(f"--data_dir={data_dir}", f"--output_dir={tmp_path}", "--dataset=cifar11")
    assert result.returncode == 1
    assert "Unknown dataset 'cifar11'. Valid datasets: cifar10" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run.json").exists() and not (tmp_path / "backup").exists()


@pytest.mark.slow
def test_pretrain_mixed_precision_trains_and_saves_a_float32_encoder(data_dir, tmp_path):
    result = run_pretrain(*SMALL_RUN, f"--data_dir={data_dir}", f"--output_dir={tmp_path}",
                          "--epochs=1", "--steps_per_epoch=3", "--knn_every=0",
                          "--mixed_precision=mixed_bfloat16")
    assert result.returncode == 0, result.stderr[-3000:]
    run = read_run(tmp_path)
    assert run["config"]["mixed_precision"] == "mixed_bfloat16" and run["steps"] == 3
    assert run["final_metrics"]["loss"] > 0
    import h5py

    with h5py.File(tmp_path / "encoder.weights.h5") as weights:
        dtypes = set()
        weights.visititems(lambda _, item: dtypes.add(str(item.dtype)) if hasattr(item, "dtype") else None)
    assert dtypes == {"float32"}  # variables stay float32 under a mixed policy
    # ... and the saved encoder computes in float32: the policy was a training choice.
    encoder = keras.saving.load_model(tmp_path / "encoder.keras", safe_mode=True)
    assert {layer.dtype_policy.name for layer in encoder.layers} == {"float32"}


@pytest.mark.slow
def test_pretrain_multi_worker_on_localhost(data_dir, tmp_path):
    from tests.helpers import OUTLIVED_THE_CHIEF
    from tests.test_multi_worker import free_ports

    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        env = {
            **os.environ, "CUDA_VISIBLE_DEVICES": "",
            "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
        }
        processes.append(subprocess.Popen(
            [sys.executable, SCRIPT, *SMALL_RUN, f"--data_dir={data_dir}",
             f"--output_dir={tmp_path / f'worker{index}'}", "--strategy=multi_worker",
             "--epochs=1", "--steps_per_epoch=3", "--knn_every=1"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    try:
        logs = [process.communicate(timeout=300)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log[-3000:]
        assert OUTLIVED_THE_CHIEF not in log, log[-3000:]
    run = read_run(tmp_path / "worker0")  # the chief writes the outputs
    assert run["strategy"] == "multi_worker" and run["num_replicas"] == 2
    assert run["steps"] == 3 and 0 <= run["final_metrics"]["knn_accuracy"] <= 1
    assert not (tmp_path / "worker1" / "run.json").exists()


def test_the_script_names_the_pretraining_backends(pretrain_script):
    # Spelled out in the script, which reads --backend before Keras is imported.
    from keras_directcopy.utils.backend import PRETRAINING_BACKENDS

    assert pretrain_script.BACKENDS == PRETRAINING_BACKENDS
