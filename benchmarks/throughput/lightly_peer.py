"""Times lightly's BYOL training loop end to end on real CIFAR-10 images,
the peer that `benchmarks/throughput/benchmark.py --peer=lightly` times ours against.

    $HOME/venvs/lightly/bin/python benchmarks/throughput/lightly_peer.py --warmup_steps=10 --steps=300

It mirrors the BYOL model of lightly's CIFAR-10 benchmark
(`docs/source/getting_started/benchmarks/cifar10_benchmark.py`: `BYOLModel`,
`byol_transform` and `get_data_loaders`, read in the lightly repository at
version 1.5.26; its ImageNet counterpart is
`benchmarks/imagenet/resnet50/byol.py`), with lightly 1.6.0's modules, as a
plain PyTorch loop rather than through PyTorch Lightning:

* views: `lightly.transforms.BYOLTransform` of a `BYOLView1Transform` and a
  `BYOLView2Transform`, each with `input_size=32` and `gaussian_blur=0.0` (the
  benchmark's CIFAR settings) and the default ImageNet normalization; the
  remaining parameters are lightly's defaults (crop scale 0.08-1, flip 0.5,
  color jitter 0.4/0.4/0.2/0.1 with probability 0.8, grayscale 0.2,
  solarization 0 / 0.2), the same numbers as our `cifar10` preset;
* data: the 50,000 training images of `../shared/data/cifar10/` as PIL
  images through that transform, in `torch.utils.data.DataLoader(batch_size,
  shuffle=True, drop_last=True, num_workers=2)` (the benchmark's loader; it
  uses 8 workers on its GPU machine);
* model: the backbone is ours, not lightly's ResNet-18: the CIFAR ResNet-20
  with option-A shortcuts of `benchmarks/throughput/torch_peer.py` (64 features; the
  transform has normalized the input, so its own input statistics are the
  identity). `lightly.models.modules.BYOLProjectionHead(64, 1024, 256)` and
  `BYOLPredictionHead(256, 1024, 256)` (the benchmark's hidden and output
  sizes, from the backbone's feature size); a momentum copy of backbone and
  projection head made with `copy.deepcopy` and
  `lightly.models.utils.deactivate_requires_grad`;
* step: `lightly.models.utils.update_momentum(..., m=0.99)` for backbone and
  projection head first, then both views through the online and the momentum
  network, loss `0.5 * (NegativeCosineSimilarity()(p0, z1) +
  NegativeCosineSimilarity()(p1, z0))`, and `torch.optim.SGD(lr=0.06,
  momentum=0.9, weight_decay=5e-4)` over backbone, projection and prediction
  heads (the benchmark's `lr=6e-2 * batch_size / 128`). The benchmark's
  per-epoch cosine schedule and kNN evaluation do not change a step's cost
  and are left out.

Prints one JSON line: pairs per second of wall time over the timed steps
(warm-up steps first, untimed, which include starting the loader's workers),
the share of that time spent waiting for the loader, CPU seconds of this
process and of the loader workers over the timed steps, peak resident set
sizes, threads and library versions. `--check` only imports the libraries
and prints their versions.
"""

import argparse
import copy
import json
import os
import resource
import sys
import time

try:
    import lightly
    import numpy as np
    import torch
    import torchvision
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform
    from PIL import Image
except ModuleNotFoundError as error:
    sys.exit(
        f"lightly_peer.py: {sys.executable} cannot import {error.name!r}; run it with the lightly venv, built by "
        f"`python3 -m venv $HOME/venvs/lightly && $HOME/venvs/lightly/bin/pip install torch torchvision "
        f"lightly==1.6.0 numpy pillow` (pass --lightly_python=$HOME/venvs/lightly/bin/python to benchmark.py)."
    )

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_peer

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data", "cifar10")
TRAIN_FILES = ("cifar10_part1of3.npz", "cifar10_part2of3.npz")
EMA = 0.99  # the benchmark's update_momentum(m=0.99)
PROJECTION_DIMS = (1024, 256)  # BYOLProjectionHead(512, 1024, 256) in the benchmark, for a ResNet-18
PREDICTION_HIDDEN_DIM = 1024  # BYOLPredictionHead(256, 1024, 256)


class CifarImages(torch.utils.data.Dataset):
    """The CIFAR-10 training images as PIL images through `transform`;
    items are `(views, label)`."""

    def __init__(self, data_dir, transform):
        parts = [np.load(os.path.join(data_dir, name)) for name in TRAIN_FILES]
        self.images = np.concatenate([part["x_train"] for part in parts])
        self.labels = np.concatenate([part["y_train"] for part in parts]).astype(np.int64)
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


class BYOL(torch.nn.Module):
    """The benchmark's `BYOLModel` on `backbone` (pooled features)."""

    def __init__(self, backbone, feature_dim):
        super().__init__()
        self.backbone = backbone
        self.projection_head = BYOLProjectionHead(feature_dim, *PROJECTION_DIMS)
        self.prediction_head = BYOLPredictionHead(PROJECTION_DIMS[1], PREDICTION_HIDDEN_DIM, PROJECTION_DIMS[1])
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NegativeCosineSimilarity()

    def online_parameters(self):
        return (list(self.backbone.parameters()) + list(self.projection_head.parameters())
                + list(self.prediction_head.parameters()))

    def forward(self, x):
        return self.prediction_head(self.projection_head(self.backbone(x).flatten(start_dim=1)))

    def forward_momentum(self, x):
        return self.projection_head_momentum(self.backbone_momentum(x).flatten(start_dim=1)).detach()

    def loss(self, x0, x1):
        """The benchmark's `training_step`: the momentum update first, then
        the symmetric loss of the two views."""
        update_momentum(self.backbone, self.backbone_momentum, m=EMA)
        update_momentum(self.projection_head, self.projection_head_momentum, m=EMA)
        p0, z0 = self.forward(x0), self.forward_momentum(x0)
        p1, z1 = self.forward(x1), self.forward_momentum(x1)
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))


def versions():
    return dict(torch=torch.__version__, torchvision=torchvision.__version__, lightly=lightly.__version__,
                python=sys.version.split()[0])


def _cpu_seconds(pid):
    """User plus system CPU seconds of process `pid` (all its threads), or
    None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _workers_cpu_seconds(pids):
    seconds = [_cpu_seconds(pid) for pid in pids]
    return None if None in seconds else sum(seconds)


def _peak_rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def measure(backbone_name="resnet20", batch_size=128, warmup_steps=10, steps=100, num_workers=2,
            data_dir=DATA_DIR, lr=0.06, momentum=0.9, weight_decay=5e-4, threads=None, seed=0):
    """Trains lightly's BYOL for `warmup_steps` untimed and `steps` timed
    steps, through the data loader; returns the measurement as a dict."""
    threads = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)  # as torch_peer.measure: every usable core (the workers use one each)
    torch.manual_seed(seed)
    transform = BYOLTransform(
        view_1_transform=BYOLView1Transform(input_size=32, gaussian_blur=0.0),
        view_2_transform=BYOLView2Transform(input_size=32, gaussian_blur=0.0),
    )
    loader = torch.utils.data.DataLoader(CifarImages(data_dir, transform), batch_size=batch_size, shuffle=True,
                                         drop_last=True, num_workers=num_workers)
    # The transform normalized the input: identity input statistics (x / 255 - 0) / (1 / 255).
    backbone = torch_peer.ResNet(backbone_name, mean=(0.0,) * 3, std=(1 / 255,) * 3).to(torch.float32)
    model = BYOL(backbone, backbone.output_dim)
    model.train()
    optimizer = torch.optim.SGD(model.online_parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)

    total = warmup_steps + steps
    done, wait_seconds, losses = 0, 0.0, []
    while done < total:  # epochs, as a training loop would (a new worker pool each)
        iterator = iter(loader)
        workers = [worker.pid for worker in getattr(iterator, "_workers", [])]
        while done < total:
            if done == warmup_steps:  # the timed window starts with this fetch
                start, cpu_start = time.perf_counter(), os.times()
                worker_cpu_start = _workers_cpu_seconds(workers)
            fetch_start = time.perf_counter()
            try:
                (x0, x1), _ = next(iterator)
            except StopIteration:
                break
            if done >= warmup_steps:
                wait_seconds += time.perf_counter() - fetch_start
            loss = model.loss(x0, x1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())  # waits for the step, as the benchmark's self.log of the loss
            done += 1
        if done == total:
            seconds, cpu_end = time.perf_counter() - start, os.times()
            worker_cpu_end = _workers_cpu_seconds(workers)
            worker_peak_mb = max((_peak_rss_mb(pid) or 0.0 for pid in workers), default=None)
        del iterator
    # Workers that exited in the timed window (a new epoch) were reaped: their
    # CPU time is in the children's; those alive at its end are read from /proc.
    workers_cpu = None
    if worker_cpu_start is not None and worker_cpu_end is not None:
        workers_cpu = (cpu_end.children_user + cpu_end.children_system - cpu_start.children_user
                       - cpu_start.children_system + worker_cpu_end - worker_cpu_start)
    main_cpu = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    return dict(
        peer="lightly", backbone=backbone_name, batch_size=batch_size, warmup_steps=warmup_steps, steps=steps,
        num_workers=num_workers, pairs_per_s=batch_size * steps / seconds, step_ms=1000 * seconds / steps,
        loader_wait_percent=100 * wait_seconds / seconds,
        main_cpu_s=main_cpu, workers_cpu_s=workers_cpu, threads=threads,
        peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, worker_peak_mb=worker_peak_mb,
        projection_dims=[backbone.output_dim, *PROJECTION_DIMS],
        prediction_dims=[PROJECTION_DIMS[1], PREDICTION_HIDDEN_DIM, PROJECTION_DIMS[1]],
        first_loss=losses[0], last_loss=losses[-1], **versions(),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="Only import the libraries; print their versions.")
    parser.add_argument("--backbone", default="resnet20", choices=["resnet20", "resnet18"])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--warmup_steps", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--data_dir", default=DATA_DIR, help="Folder of cifar10_part{1,2}of3.npz.")
    args = parser.parse_args()
    if args.check:
        print(json.dumps(versions()))
        return
    if args.steps < 1 or args.warmup_steps < 1:
        parser.error("--steps and --warmup_steps must be at least 1.")
    print(json.dumps(measure(args.backbone, args.batch_size, args.warmup_steps, args.steps, args.num_workers,
                             args.data_dir)), flush=True)


if __name__ == "__main__":
    main()
