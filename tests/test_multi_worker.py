"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 train with
`fit()` and end with identical weights and identical logged losses."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_end_with_identical_weights(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes, outputs = [], []
    for index in range(2):
        env = dict(os.environ)
        env["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        )
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env["CUDA_VISIBLE_DEVICES"] = ""
        outputs.append(tmp_path / f"worker{index}.npz")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.multi_worker_training", str(outputs[-1])],
                cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = []
    try:
        for process in processes:
            logs.append(process.communicate(timeout=300)[0])
    finally:
        for process in processes:
            process.kill()
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log[-4000:]

    first, second = (np.load(path) for path in outputs)
    assert int(first["num_replicas"]) == 2
    assert first.files == second.files and len(first.files) > 10
    assert np.all(np.isfinite(first["loss"])) and len(first["loss"]) == 2
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
