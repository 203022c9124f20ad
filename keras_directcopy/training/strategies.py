"""`tf.distribute` strategies by name, and where XLA is used with each."""

import json
import os

import tensorflow as tf

STRATEGY_NAMES = ("default", "one_device", "mirrored", "multi_worker", "tpu")


def make_strategy(name, tpu=None):
    """Creates the strategy `name`, one of `STRATEGY_NAMES`.

    * `default`: no distribution (one device, TensorFlow's placement).
    * `one_device`: the first GPU if there is one, else the CPU.
    * `mirrored`: all visible GPUs of this machine (or its logical CPUs).
    * `multi_worker`: `MultiWorkerMirroredStrategy`, cluster from `TF_CONFIG`.
    * `tpu`: `TPUStrategy` on `tpu` (a name or grpc:// address; empty for a
      local TPU VM).

    Raises:
        ValueError: on an unknown name, or `multi_worker` without `TF_CONFIG`.
    """
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
    It stays off on CPUs, where our train step ran 1.8x slower with XLA
    (ResNet-20, batch 128, 2 cores: 165 vs 309 image pairs/s, measured with
    `scripts/benchmark.py --backbones=resnet20 --predictors=directcopy
    --inputs=synthetic --xla=on` and `--xla=off`), and under
    `MirroredStrategy` / `MultiWorkerMirroredStrategy`, where XLA cannot reach
    variables placed on other devices (seen on CPUs; not verified on several
    GPUs). `"true"` / `"false"` force it.
    """
    if setting in ("true", True):
        return True
    if setting in ("false", False):
        return False
    if setting != "auto":
        raise ValueError(f"--jit_compile must be auto, true or false, got {setting!r}.")
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    if isinstance(
        strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)
    ):
        return False
    return bool(tf.config.list_logical_devices("GPU"))


def is_chief(strategy):
    """True on the worker that writes outputs (every single-worker run)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type is None or task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
    )
