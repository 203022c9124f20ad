"""Distribution strategies by name, and where XLA is used with each.

On the TensorFlow backend they are `tf.distribute` strategies. On JAX they
are `JAXStrategy` objects: no distribution, or `keras.distribution.DataParallel`
over the local devices; the loop asks both kinds the same questions.
"""

import atexit
import contextlib
import json
import os
import re
import sys

import keras
import tensorflow as tf

from keras_directcopy.utils import backend

# The strategies of each backend, and all their names.
TENSORFLOW_STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")
JAX_STRATEGIES = ("default", "data_parallel")
STRATEGY_NAMES = TENSORFLOW_STRATEGIES + tuple(n for n in JAX_STRATEGIES if n not in TENSORFLOW_STRATEGIES)


class JAXStrategy:
    """A strategy on the JAX backend, with what the pretraining loop asks of one.

    Args:
        data_parallel: split each global batch across all local devices
            (`keras.distribution.DataParallel`); the jitted step computes the
            global batch's loss, gradients and BatchNorm statistics (see
            `models/train_step_jax.py`). Otherwise one device.
    """

    def __init__(self, data_parallel=False):
        self.distribution = keras.distribution.DataParallel() if data_parallel else None
        self.num_replicas_in_sync = len(keras.distribution.list_devices()) if data_parallel else 1

    def scope(self):
        """The distribution's scope (where variables are created and laid out), if any."""
        return self.distribution.scope() if self.distribution else contextlib.nullcontext()


def make_strategy(name, tpu=None):
    """Creates the strategy `name`, one of `STRATEGY_NAMES`.

    On the TensorFlow backend (`TENSORFLOW_STRATEGIES`):

    * `default`: no distribution (one device, TensorFlow's placement).
    * `one_device`: the first GPU if there is one, else the CPU.
    * `mirrored`: all visible GPUs of this machine (or its logical CPUs).
    * `multi_worker`: `MultiWorkerMirroredStrategy`, cluster from `TF_CONFIG`.
    * `tpu`: `TPUStrategy` on `tpu` (a name or grpc:// address; empty for a
      local TPU VM).

    On JAX (`JAX_STRATEGIES`), a `JAXStrategy`:

    * `default`: one device;
    * `data_parallel`: `keras.distribution.DataParallel` over all local
      devices.

    Raises:
        ValueError: on an unknown name, a name of the other backend, or
            `multi_worker` without `TF_CONFIG`.
    """
    if keras.backend.backend() == backend.JAX:
        if name not in JAX_STRATEGIES:
            raise ValueError(
                f"--strategy={name} is a tf.distribute strategy, which needs the TensorFlow "
                f"backend; on JAX use one of {', '.join(JAX_STRATEGIES)} (--strategy=data_parallel "
                "splits each batch over all local devices), or set --backend=tensorflow."
            )
        return JAXStrategy(data_parallel=name == "data_parallel")
    if name == "data_parallel":
        raise ValueError(
            "--strategy=data_parallel is keras.distribution.DataParallel, for the JAX backend "
            "(--backend=jax); on TensorFlow use --strategy=mirrored for the devices of one "
            "machine, or multi_worker."
        )
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "--strategy=multi_worker reads the cluster from the TF_CONFIG environment "
                "variable, which is not set. Set it on every worker, e.g. "
                + json.dumps({"cluster": {"worker": ["host1:12345", "host2:12345"]},
                              "task": {"type": "worker", "index": 0}})
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown strategy {name!r}. Valid strategies: {', '.join(STRATEGY_NAMES)}.")


def use_xla(strategy, setting="auto"):
    """Whether to compile the train step with XLA (`jit_compile`).

    `"auto"` turns XLA on where it is known to help or be required: on TPUs,
    and on a single GPU (without a strategy or with `OneDeviceStrategy`).
    It stays off on CPUs, where our train step is slower with XLA
    (`benchmarks/throughput/README.md`), and under
    `MirroredStrategy` / `MultiWorkerMirroredStrategy`, where XLA cannot reach
    variables placed on other devices (seen on CPUs; not verified on several
    GPUs). On JAX it is always on. `"true"` / `"false"` force it.
    """
    if setting in ("true", True):
        return True
    if setting in ("false", False):
        return False
    if setting != "auto":
        raise ValueError(f"--jit_compile must be auto, true or false, got {setting!r}.")
    if isinstance(strategy, JAXStrategy):
        return True  # JAX runs the step through XLA: without jit it runs op by op.
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    if isinstance(
        strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)
    ):
        return False
    return bool(tf.config.list_logical_devices("GPU"))


def run_scope(strategy):
    """The scope a whole run goes in, fit included: a JAX strategy's, whose
    distribution shards the batches and the jitted step; none for a
    `tf.distribute` strategy, whose `scope()` covers only creating the model."""
    return strategy.scope() if isinstance(strategy, JAXStrategy) else contextlib.nullcontext()


def needs_distributed_dataset(strategy):
    """Whether the input must go through `strategy.distribute_datasets_from_function`:
    under a `tf.distribute` strategy with several replicas, or on TPUs. JAX's
    `DataParallel` takes the global batches as they are and shards them."""
    if isinstance(strategy, JAXStrategy):
        return False
    return strategy.num_replicas_in_sync > 1 or isinstance(strategy, tf.distribute.TPUStrategy)


def is_chief(strategy):
    """True on the worker that writes outputs (every single-worker run)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    return _is_chief_task(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict())


def _is_chief_task(task_type, task_id, cluster):
    return task_type is None or task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in cluster
    )


def non_chief_task(strategy):
    """This process's task in a multi-worker cluster, as `type-index`
    (`worker-1`), unless it is the chief; None for the chief and for every
    single-process run. Known before the strategy is made: for the name
    `multi_worker` it is read from `TF_CONFIG`.

    Args:
        strategy: a name of `STRATEGY_NAMES`, or a strategy.
    """
    if strategy == "multi_worker":
        try:
            config = json.loads(os.environ.get("TF_CONFIG") or "{}")
            task = config.get("task", {})
            task_type, task_id, cluster = task.get("type"), int(task.get("index", 0)), config.get("cluster", {})
        except (ValueError, AttributeError, TypeError):
            return None  # make_strategy reports a bad TF_CONFIG
    elif isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.cluster_resolver:
        resolver = strategy.cluster_resolver
        task_type, task_id, cluster = resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()
    else:
        return None
    return None if _is_chief_task(task_type, task_id, cluster) else f"{task_type}-{task_id}"


def any_worker(strategy):
    """A function `flag -> bool` that is True on every worker when `flag` is
    True on any, for decisions all workers must take at the same step
    (stopping: a worker that stops alone leaves the others waiting in their
    next all-reduce). Under `MultiWorkerMirroredStrategy` it all-reduces the
    flag, one scalar collective per call, so every worker must call it at
    the same points; elsewhere (one process) it returns `flag`.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return bool

    @tf.function
    def count(flag):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(tf.identity, args=(flag,)), axis=None)

    return lambda flag: bool(count(tf.constant(float(flag))) > 0)


def lost_worker_errors(strategy):
    """The errors a collective raises on the workers that are left when
    another worker of a `MultiWorkerMirroredStrategy` run stops (killed,
    its machine lost): TensorFlow's coordination service reports the task
    that stopped sending heartbeats, and the all-reduce is aborted. An empty
    tuple for other strategies, where these errors mean something else."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return ()
    return (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
            tf.errors.DeadlineExceededError)


def tasks_named_in(error):
    """The cluster tasks a TensorFlow error names (`/job:worker/task:1`,
    `/job:worker/replica:0/task:1`), as `worker 1`, sorted: for a lost
    worker, the task that stopped sending heartbeats or closed its socket."""
    found = re.findall(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)", getattr(error, "message", str(error)))
    return sorted({f"{job} {task}" for job, task in found})


# How long a worker waits for the others at the end of a multi-worker run:
# the chief may still be writing the run's outputs (or evaluating) when the
# other workers are done.
LEAVE_TIMEOUT_S = 600


def end_process(code, wait_for_workers=True, timeout_s=LEAVE_TIMEOUT_S):
    """Ends this process with exit status `code`. In a multi-worker run the
    workers end together and the chief last.

    The chief hosts TensorFlow's coordination service, and every other worker
    sends it heartbeats until its process is gone: one that outlives the
    chief logs "Failed to send RPC to coordination service" after its own
    last message. So every worker first waits at a coordination-service
    barrier (at most `timeout_s`; not when `wait_for_workers` is False, for a
    run that lost a worker, which will never arrive), then the workers other
    than the chief end at once (exit handlers run, output flushed, no
    interpreter teardown) while the chief ends normally, which takes longer.
    Elsewhere (no coordination service) it is `sys.exit(code)`.
    """
    # The coordination service's only Python API.
    from tensorflow.python.eager import context

    if context.context().coordination_service is None:
        sys.exit(code)
    if wait_for_workers:
        with contextlib.suppress(tf.errors.OpError):  # a worker that stopped, or timed out: end anyway
            context.context().wait_at_barrier("keras_directcopy/end_process", int(timeout_s * 1000))
    if non_chief_task("multi_worker") is None:
        sys.exit(code)
    atexit._run_exitfuncs()  # released output-directory claims, among others
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
