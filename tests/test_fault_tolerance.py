"""What a long run survives besides kill -9 (tested in test_pretrain.py):
a second run into its directory, a bad --output_dir, SIGTERM (one device,
JAX, every worker of a multi-worker run), a lost worker, and writes that
fail midway (a file-size limit in the child process stands in for a full
disk). Every process a test starts is bounded by a timeout and killed
before the test ends; workers talk over 127.0.0.1 only."""

import contextlib
import errno
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest

from keras_directcopy.utils.files import WriteFailed, atomic_save_all
from keras_directcopy.utils.run_lock import LOCK_FILENAME, OutputDirError, OutputDirInUse, claim_output_dir
from tests.helpers import OUTLIVED_THE_CHIEF
from tests.test_hub import architecture_entry, make_preset, tiny_weights  # noqa: F401 (a fixture)
from tests.test_multi_worker import free_ports
from tests.test_pretrain import REPO_ROOT, SCRIPT, SMALL_RUN, data_dir, read_run, run_pretrain  # noqa: F401
from tests.test_register_preset import NAME as REGISTERED_NAME
from tests.test_register_preset import registry  # noqa: F401 (a fixture)

RUN_LOCK_MODULE = REPO_ROOT / "keras_directcopy" / "utils" / "run_lock.py"
RESUMABLE_EXIT_CODE = 75  # preemption.RESUMABLE_EXIT_CODE, as a cluster's restart policy names it
# 256 images, batch 32: 8 steps an epoch.
SHORT_RUN = [*SMALL_RUN, "--epochs=3", "--knn_every=0"]


@contextlib.contextmanager
def started(*processes_to_start):
    """Starts `(argv, kwargs)` processes; kills those still running at the end."""
    processes = []
    try:
        for argv, kwargs in processes_to_start:
            processes.append(subprocess.Popen(argv, cwd=REPO_ROOT, **kwargs))
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        for _, kwargs in processes_to_start:
            if hasattr(kwargs.get("stdout"), "close"):
                kwargs["stdout"].close()


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def environment(**extra):
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1", **extra}


def last_line(text):
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


# -- one run at a time in an output directory ---------------------------------


def test_a_held_output_dir_is_refused_to_other_processes_until_its_holder_dies(tmp_path):
    """Across processes: the holder is a child that loads the lock module by
    its file (no TensorFlow, so it starts in a moment)."""
    output_dir = tmp_path / "run"
    holder_code = (
        "import importlib.util, sys, time\n"
        f"spec = importlib.util.spec_from_file_location('run_lock', {str(RUN_LOCK_MODULE)!r})\n"
        "run_lock = importlib.util.module_from_spec(spec); spec.loader.exec_module(run_lock)\n"
        f"with run_lock.claim_output_dir({str(output_dir)!r}, command='the first run'):\n"
        "    print('held', flush=True); time.sleep(120)\n"
    )
    with started(([sys.executable, "-c", holder_code], dict(stdout=subprocess.PIPE, text=True))) as (holder,):
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputDirInUse) as refused:
            with claim_output_dir(str(output_dir)):
                pass
        message = str(refused.value)
        assert str(output_dir) in message and f"process {holder.pid}" in message and "the first run" in message
        assert "\n" not in message and "pass another --output_dir" in message
        # Another task of a multi-worker run has a lock of its own.
        with claim_output_dir(str(output_dir), task="worker-1"):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # The lock of a dead process does not block: the resume case.
    with claim_output_dir(str(output_dir)):
        with claim_output_dir(str(output_dir)):  # the holder may claim it again (script, then library)
            assert json.loads((output_dir / LOCK_FILENAME).read_text())["pid"] == os.getpid()
    assert not (output_dir / LOCK_FILENAME).exists()


def unwritable_directory(tmp_path):
    if os.geteuid() != 0:
        locked = tmp_path / "read_only"
        locked.mkdir(mode=0o555)
        return locked / "run"
    # Root writes through permission bits; the kernel refuses a directory in sysfs.
    return Path("/sys/keras-directcopy-unwritable/run")


@pytest.mark.parametrize("case", ["regular file", "below a regular file", "unwritable"])
def test_a_bad_output_dir_is_refused_in_one_line_before_anything_is_written(tmp_path, case):
    regular_file = tmp_path / "a_file"
    regular_file.write_text("not a directory")
    output_dir = {"regular file": regular_file, "below a regular file": regular_file / "run",
                  "unwritable": unwritable_directory(tmp_path)}[case]
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(OutputDirError) as refused:
        with claim_output_dir(str(output_dir)):
            pass
    message = str(refused.value)
    assert str(output_dir) in message and "\n" not in message and "--output_dir" in message
    expected = {"regular file": "is an existing file, not a directory",
                "below a regular file": "cannot be created (Not a directory)",
                "unwritable": "cannot be created" if os.geteuid() == 0 else "not writable"}[case]
    assert expected in message
    assert sorted(tmp_path.rglob("*")) == before and regular_file.read_text() == "not a directory"


@pytest.mark.slow
def test_the_script_refuses_an_output_dir_that_is_a_file_in_one_line(data_dir, tmp_path):
    regular_file = tmp_path / "a_file"
    regular_file.write_text("not a directory")
    result = run_pretrain(*SHORT_RUN, f"--data_dir={data_dir}", f"--output_dir={regular_file}", timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert last_line(result.stderr) == (
        f"error: The output directory {regular_file} is an existing file, not a directory: pass another "
        "--output_dir (a directory, created if missing).")
    assert sorted(tmp_path.iterdir()) == [regular_file]


@pytest.mark.slow
def test_a_second_run_into_the_directory_of_a_live_run_is_refused_at_once(data_dir, tmp_path):
    # Long enough to be alive while the second starts, however fast the machine: it is killed.
    flags = [*SMALL_RUN, f"--data_dir={data_dir}", f"--output_dir={tmp_path}", "--epochs=1000", "--knn_every=0"]
    first_run = ([sys.executable, SCRIPT, *flags], dict(env=environment(), stdout=subprocess.DEVNULL,
                                                         stderr=subprocess.DEVNULL))
    with started(first_run) as (first,):
        wait_for(lambda: (tmp_path / "progress.json").exists() or first.poll() is not None, 300, "training")
        assert first.poll() is None, "the first run ended early"
        second = run_pretrain(*flags, timeout=180)  # refused in seconds, not minutes
        assert first.poll() is None, "the first run ended while the second started"
        assert second.returncode == 1 and "Traceback" not in second.stderr
        refusal = last_line(second.stderr)
        assert refusal.startswith(f"error: {tmp_path} is in use by another run, process {first.pid} on ")
        assert "scripts/pretrain.py" in refusal and "pass another --output_dir" in refusal
        # Nothing of the second run was recorded in the first's directory.
        assert len(json.loads((tmp_path / "progress.json").read_text())["invocations"]) == 1
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    with claim_output_dir(str(tmp_path)):  # what the killed run held is free again
        pass


# -- graceful preemption ----------------------------------------------------------


def preempted_step(stderr):
    match = re.search(r"Stopped by (SIGTERM|a preemption signal to another worker) at step (\d+) of (\d+), "
                      r"backed up in ", last_line(stderr))
    assert match, stderr[-3000:]
    return int(match.group(2))


def check_preempted_then_resumed(first_stderr, resumed, output_dir, total_steps):
    """The preempted invocation saved its step; the same command resumed
    there and ran exactly the steps that remain."""
    step = preempted_step(first_stderr)
    assert "Traceback" not in first_stderr
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from the backup at step {step} of {total_steps}." in resumed.stdout
    run = read_run(output_dir)
    assert run["steps"] == total_steps and run["invocations"] == 2
    progress = json.loads((output_dir / "progress.json").read_text())
    assert [entry["first_step"] for entry in progress["invocations"]] == [0, step]
    return step


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_sigterm_backs_up_at_the_next_step_and_the_same_command_resumes(data_dir, tmp_path, backend):
    """The signal arrives while the first step runs (the handler is in place
    before `progress.json` is written), so the backup holds a step that no
    periodic backup (every epoch here) would have saved."""
    flags = [*SHORT_RUN, f"--data_dir={data_dir}", f"--output_dir={tmp_path}", f"--backend={backend}"]
    process = ([sys.executable, SCRIPT, *flags],
               dict(env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    with started(process) as (first,):
        wait_for(lambda: (tmp_path / "progress.json").exists() or first.poll() is not None, 300, "training")
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == RESUMABLE_EXIT_CODE, stderr[-3000:]
    assert "run the same command to resume from this step" in last_line(stderr)
    assert not (tmp_path / "run.json").exists()

    resumed = run_pretrain(*flags, timeout=300)
    step = check_preempted_then_resumed(stderr, resumed, tmp_path, total_steps=24)
    assert step % 8, "the backup is the periodic one, not the preemption's"


def start_workers(flags, output_dir, logs_dir, name):
    """`(argv, kwargs)` of the two workers of a run on 127.0.0.1, each logging to a file."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    specs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        log = open(logs_dir / f"{name}_worker{index}.log", "w")
        specs.append(([sys.executable, SCRIPT, *flags, f"--output_dir={output_dir}", "--strategy=multi_worker"],
                      dict(env=environment(TF_CONFIG=json.dumps(tf_config)), stdout=log, stderr=subprocess.STDOUT)))
    return specs


def wait_all(processes, timeout):
    deadline = time.time() + timeout
    for process in processes:
        process.wait(timeout=max(deadline - time.time(), 1))
    return [process.returncode for process in processes]


def log_of(logs_dir, name, index):
    return (logs_dir / f"{name}_worker{index}.log").read_text()


@pytest.mark.slow
def test_sigterm_to_every_worker_of_a_multi_worker_run(data_dir, tmp_path):
    """The signals reach the workers seconds apart, as on a real cluster:
    worker 1 first, the chief once worker 1 has stopped or 2 s later. Both
    stop at the step after worker 1's signal (a worker that stopped alone
    would leave the other waiting in its next all-reduce), the chief backs
    it up, and the job started again resumes there."""
    output_dir = tmp_path / "run"
    flags = [*SMALL_RUN, f"--data_dir={data_dir}", "--epochs=2", "--save_freq=3", "--knn_every=0"]
    with started(*start_workers(flags, output_dir, tmp_path, "first")) as (chief, worker):
        # Past the first step (the first backup), so that the signals fall on
        # different steps; every worker has its handler in place once it
        # prints "Training at".
        wait_for(lambda: (output_dir / "backup" / "backup.weights.h5").exists()
                 and all("Training at" in log_of(tmp_path, "first", i) for i in range(2)), 300, "training")
        worker.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=2)
        chief.send_signal(signal.SIGTERM)  # unless it has exited
        codes = wait_all([chief, worker], timeout=240)
    logs = [log_of(tmp_path, "first", i) for i in range(2)]
    assert codes == [RESUMABLE_EXIT_CODE] * 2, logs[0][-3000:] + logs[1][-3000:]
    # The message is each worker's last line: the chief ended last.
    assert not any(OUTLIVED_THE_CHIEF in log for log in logs), logs[1][-3000:]
    steps = {preempted_step(log) for log in logs}
    assert len(steps) == 1, f"the workers stopped at different steps: {steps}"

    with started(*start_workers(flags, output_dir, tmp_path, "again")) as workers:
        codes = wait_all(workers, timeout=400)
    chief = log_of(tmp_path, "again", 0)
    assert codes == [0, 0], chief[-3000:] + log_of(tmp_path, "again", 1)[-3000:]
    assert OUTLIVED_THE_CHIEF not in log_of(tmp_path, "again", 1)
    (step,) = steps
    assert f"Resuming from the backup at step {step} of 16." in chief
    assert read_run(output_dir)["steps"] == 16


# -- a lost worker ------------------------------------------------------------------


@pytest.mark.slow
def test_a_lost_worker_stops_the_others_with_a_message_and_the_job_resumes(data_dir, tmp_path):
    """kill -9 of worker 1 mid-epoch: the chief stops within TensorFlow's
    heartbeat timeout, names the lost worker, and exits with the resumable
    code; the job started again loses at most --save_freq steps."""
    output_dir = tmp_path / "run"
    flags = [*SMALL_RUN, f"--data_dir={data_dir}", "--epochs=3", "--save_freq=2", "--knn_every=0"]
    backup = output_dir / "backup" / "backup.weights.h5"
    with started(*start_workers(flags, output_dir, tmp_path, "first")) as (chief, worker):
        wait_for(lambda: backup.exists() or chief.poll() is not None, 300, "the first backup")
        assert chief.poll() is None, log_of(tmp_path, "first", 0)[-3000:]
        worker.send_signal(signal.SIGKILL)
        lost_at = time.time()
        chief.wait(timeout=180)  # TensorFlow's heartbeat timeout is seconds, not minutes
        stopped_after = time.time() - lost_at
    chief_log = log_of(tmp_path, "first", 0)
    assert chief.returncode == RESUMABLE_EXIT_CODE, chief_log[-3000:]
    message = last_line(chief_log)
    assert message.startswith("interrupted: A worker of this multi-worker run stopped or cannot be reached")
    assert "worker 1" in message and "Start every worker again with the same command" in message
    lost_step = int(re.search(r"at step (\d+)\.", message).group(1))
    assert stopped_after < 120

    with started(*start_workers(flags, output_dir, tmp_path, "again")) as workers:
        codes = wait_all(workers, timeout=400)
    chief_log = log_of(tmp_path, "again", 0)
    assert codes == [0, 0], chief_log[-3000:] + log_of(tmp_path, "again", 1)[-3000:]
    resumed_at = int(re.search(r"Resuming from the backup at step (\d+) of 24\.", chief_log).group(1))
    assert lost_step - 2 <= resumed_at <= lost_step  # at most --save_freq steps redone
    assert read_run(output_dir)["steps"] == 24


# -- writes that fail midway ------------------------------------------------------------


def file_size_limit(limit):
    """A `preexec_fn` that limits the size of every file the child writes;
    a write past it fails with EFBIG (Python ignores SIGXFSZ), as a full
    disk fails one with ENOSPC."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def contents(directory):
    return {path: path.read_bytes() for path in Path(directory).rglob("*") if path.is_file()}


def test_files_saved_as_one_keep_every_previous_file_when_a_write_fails(tmp_path):
    first, second = tmp_path / "encoder.weights.h5", tmp_path / "encoder.config.json"
    first.write_text("old weights")
    second.write_text("old architecture")

    def write(text):
        return lambda temporary: Path(temporary).write_text(text)

    def disk_full_midway(temporary):
        Path(temporary).write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteFailed) as failed:
        atomic_save_all([(first, write("new weights")), (second, disk_full_midway)])
    assert str(failed.value) == (f"Writing {second} failed (No space left on device); what was there is "
                                 "as it was before.")
    assert first.read_text() == "old weights" and second.read_text() == "old architecture"
    assert sorted(path.name for path in tmp_path.iterdir()) == [second.name, first.name]


def test_an_encoder_write_that_fails_midway_keeps_the_previous_encoder(tmp_path, monkeypatch):
    """The architecture file, written last, fails after the new encoder.keras
    and weights were written: neither replaces the previous one."""
    from keras_directcopy.models import backbones
    from keras_directcopy.training.loop import save_encoder

    encoder = backbones.build_backbone("resnet20", (32, 32, 3), width_multiplier=0.25)
    save_encoder(encoder, str(tmp_path))
    saved = contents(tmp_path)
    retrained = keras.models.clone_model(encoder)
    retrained.set_weights([weight + 1 for weight in encoder.get_weights()])

    def disk_full_midway(model, path):
        Path(path).write_text("{")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(backbones, "write_architecture", disk_full_midway)
    with pytest.raises(WriteFailed, match="No space left on device"):
        save_encoder(retrained, str(tmp_path))
    assert contents(tmp_path) == saved  # encoder.keras, its weights and architecture: all the previous
    loaded = keras.saving.load_model(tmp_path / "encoder.keras", safe_mode=True)
    assert all((a == b).all() for a, b in zip(loaded.get_weights(), encoder.get_weights()))


@pytest.mark.slow
def test_a_backup_write_that_fails_midway_keeps_the_previous_backup_and_encoder(data_dir, tmp_path):
    from keras_directcopy import configs
    from keras_directcopy.training.callbacks import ResumableBackup
    from keras_directcopy.training.loop import build_model, build_optimizer

    flags = [*SMALL_RUN, f"--data_dir={data_dir}", f"--output_dir={tmp_path}", "--epochs=2", "--knn_every=0",
             "--jit_compile=false"]
    part = run_pretrain(*flags, "--stop_at_epoch=1")
    assert part.returncode == 0, part.stderr[-3000:]
    saved = contents(tmp_path)
    backup = tmp_path / "backup" / "backup.weights.h5"
    # The backup (about 1.7 MB) cannot be written whole; the run log and the
    # TensorBoard events (a few KB) can.
    limit = backup.stat().st_size // 2
    failed = subprocess.run(
        [sys.executable, SCRIPT, *flags], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
        env=environment(), preexec_fn=file_size_limit(limit),
    )
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    assert "Resuming from the backup at step 8 of 16." in failed.stdout
    assert last_line(failed.stderr) == (
        f"error: Writing {backup} failed (File too large); what was there is as it was before. Make room "
        "(or lift the limit) and run the same command again: the run resumes from its last backup.")
    for path in (backup, tmp_path / "encoder.keras", tmp_path / "encoder.weights.h5", tmp_path / "run.json"):
        assert path.read_bytes() == saved[path], path
    assert not list(tmp_path.rglob(".partial*"))
    # The previous encoder and backup load.
    keras.saving.load_model(tmp_path / "encoder.keras", safe_mode=True)
    config = configs.get_config("quickstart", backbone="resnet20", width_multiplier=0.25, batch_size=32, epochs=2)
    model = build_model(config, 32, total_steps=16)
    model.compile(optimizer=build_optimizer(config, 8, 16))
    assert ResumableBackup(str(backup.parent)).restore(model) == 8


@pytest.mark.slow
def test_register_preset_with_a_failing_write_keeps_the_registry_as_it_was(registry, tmp_path, monkeypatch):
    from keras_directcopy.models.backbones import ARCHITECTURE_FILENAME
    from keras_directcopy.presets import registration, zoo
    from keras_directcopy.training.loop import save_encoder

    zoo_dir, run_dir, cards, encoder = registry
    registration.register(REGISTERED_NAME, str(zoo_dir), str(cards), run_dir=str(run_dir), bundle=True)
    registered = contents(zoo_dir)
    # Another run of the same preset: other weights, and an architecture file
    # of the same encoder written differently, so replacing it alone would
    # leave the registry's entry naming a file it no longer holds.
    other_run = tmp_path / "other_run"
    retrained = keras.models.clone_model(encoder)
    retrained.set_weights([weight + 1 for weight in encoder.get_weights()])
    save_encoder(retrained, str(other_run))
    architecture = other_run / ARCHITECTURE_FILENAME
    architecture.write_text(json.dumps(json.loads(architecture.read_text()), indent=4))
    (other_run / "run.json").write_bytes((run_dir / "run.json").read_bytes())
    # The architecture file fits under the limit, the weights do not.
    limit = (architecture.stat().st_size + (other_run / "encoder.weights.h5").stat().st_size) // 2
    assert architecture.stat().st_size < limit < (other_run / "encoder.weights.h5").stat().st_size
    failed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "register_preset.py"), f"--preset={REGISTERED_NAME}",
         f"--run_dir={other_run}", "--bundle", f"--zoo_dir={zoo_dir}", f"--cards_dir={cards}"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env=environment(),
        preexec_fn=file_size_limit(limit),
    )
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    assert re.fullmatch(r"register_preset\.py: Writing \S+ failed \(File too large\); what was there is as it "
                        r"was before\. The registry is as it was: make room and run it again\.",
                        last_line(failed.stderr)), failed.stderr[-3000:]
    assert contents(zoo_dir) == registered
    monkeypatch.setenv(zoo.REGISTRY_ENV, str(zoo_dir))
    loaded = zoo.load_pretrained(REGISTERED_NAME)
    assert all((a == b).all() for a, b in zip(loaded.get_weights(), encoder.get_weights()))


@pytest.mark.slow
def test_publish_dry_run_with_a_failing_write_keeps_the_previous_folder(tiny_weights, tmp_path):  # noqa: F811
    from keras_directcopy.presets import upload, zoo

    _, weights, sha256 = tiny_weights
    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    preset = make_preset(sha256, architecture=architecture_entry(weights))
    (registry_dir / f"{preset['name']}.json").write_text(json.dumps(preset))
    folder = tmp_path / "folder"
    upload.publish(preset, weights, preset["hub"]["repo_id"], dry_run=True, out_dir=str(folder))
    built = contents(folder)
    failed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "publish.py"), f"--preset={preset['name']}",
         f"--weights={weights}", "--dry_run", f"--out_dir={folder}"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
        env=environment(**{zoo.REGISTRY_ENV: str(registry_dir)}),
        preexec_fn=file_size_limit(Path(weights).stat().st_size // 2),
    )
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    assert last_line(failed.stderr) == (
        f"publish.py: Writing {folder} failed (File too large); what was there is as it was before. "
        "Make room and run it again.")
    assert contents(folder) == built and not list(tmp_path.glob(".partial*"))
    keras.saving.load_model(folder)  # the previous folder, a model in Keras' format
