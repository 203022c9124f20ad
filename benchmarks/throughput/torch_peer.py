"""A PyTorch implementation of exactly this package's DirectCopy training
step, the peer that `benchmarks/throughput/benchmark.py --peer=torch` times ours against.

Same ResNet (the CIFAR ResNet-20 with option-A shortcuts, or ResNet-18 with
the CIFAR stem), same input normalization, projector (Linear, BatchNorm
without affine parameters, ReLU, Linear), same DirectCopy predictor (running
correlation with rho, `W_p = F / lambda_max(F) + eps I` by the same warm-started
power iteration, updated after the optimizer step), independent EMA target at
a constant momentum, symmetric loss `2 - 2 cos`, SGD with momentum and
coupled weight decay on every online parameter. Where the frameworks differ
by default it follows ours:

* stride-2 3x3 convolutions pad "same" as TensorFlow does (one pixel at the
  bottom and right only), not PyTorch's symmetric `padding=1`;
* BatchNorm uses Keras' epsilon 1e-3 and momentum 0.99 (PyTorch's
  `momentum=0.01`).

The modules are named as the Keras layers, so `copy_keras_weights` can copy a
`NonContrastiveModel`'s weights in and `tests/test_torch_peer.py` can check
that both compute the same loss and `W_p` from the same weights and batch.

Installed with the `[bench]` extra; never imported by the package.
"""

import os
import resource
import time

import torch
from torch import nn
from torch.nn import functional

BN_EPSILON = 1e-3  # keras.layers.BatchNormalization's
BN_MOMENTUM = 0.01  # PyTorch's convention for Keras' momentum 0.99
POWER_ITERATION_TOLERANCE = 1e-7  # keras_directcopy.models.predictor_matrices'
POWER_ITERATION_MAX_STEPS = 500


class SameConv2d(nn.Conv2d):
    """A bias-free convolution with TensorFlow's "same" padding: for stride 2
    the extra row and column of padding go at the bottom and right, by an
    explicit pad; symmetric padding is the convolution's own."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=False)

    def forward(self, x):
        (top, bottom), (left, right) = (
            _same_padding(x.shape[-2], self.kernel_size[0], self.stride[0]),
            _same_padding(x.shape[-1], self.kernel_size[1], self.stride[1]))
        if top == bottom and left == right:
            # Symmetric (every stride-1 and 1x1 convolution here): the
            # convolution pads inside its kernel, as a PyTorch model would,
            # rather than copying the input into a padded tensor first.
            return functional.conv2d(x, self.weight, None, self.stride, (top, left))
        return super().forward(functional.pad(x, (left, right, top, bottom)))


def _same_padding(size, kernel, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def batch_norm_2d(channels):
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM)


class BasicBlock(nn.Module):
    def __init__(self, in_channels, width, stride, option_a_shortcut):
        super().__init__()
        self.conv1 = SameConv2d(in_channels, width, 3, stride)
        self.bn1 = batch_norm_2d(width)
        self.conv2 = SameConv2d(width, width, 3)
        self.bn2 = batch_norm_2d(width)
        self.stride, self.in_channels, self.width = stride, in_channels, width
        self.option_a_shortcut = option_a_shortcut
        if (stride != 1 or in_channels != width) and not option_a_shortcut:
            self.shortcut_conv = SameConv2d(in_channels, width, 1, stride)
            self.shortcut_bn = batch_norm_2d(width)

    def forward(self, x):
        y = functional.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x
        if self.stride != 1 or self.in_channels != self.width:
            if self.option_a_shortcut:
                # He et al.'s option A, as keras_directcopy.models.backbones:
                # subsample, then zero-pad the new channels on both sides.
                shortcut = x[:, :, ::self.stride, ::self.stride]
                extra = self.width - self.in_channels
                shortcut = functional.pad(shortcut, (0, 0, 0, 0, extra // 2, extra - extra // 2))
            else:
                shortcut = self.shortcut_bn(self.shortcut_conv(x))
        return functional.relu(y + shortcut)


class ResNet(nn.Module):
    """`resnet20` (CIFAR, 16/32/64 channels, option-A shortcuts) or
    `resnet18` (CIFAR stem, projection shortcuts), uint8-range NCHW images
    to pooled features, with the input statistics `mean` and `std`."""

    def __init__(self, name, mean, std, width_multiplier=1.0):
        super().__init__()
        scaled = lambda channels: max(1, int(round(channels * width_multiplier)))
        if name == "resnet20":
            stem, widths, blocks, option_a = scaled(16), [scaled(16 * 2**s) for s in range(3)], 3, True
        elif name == "resnet18":
            stem, widths, blocks, option_a = scaled(64), [scaled(64 * 2**s) for s in range(4)], 2, False
        else:
            raise ValueError(f"Unknown peer backbone {name!r}: resnet20 or resnet18.")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1))
        self.stem_conv = SameConv2d(3, stem, 3)
        self.stem_bn = batch_norm_2d(stem)
        layers, channels = {}, stem
        for stage, width in enumerate(widths):
            for index in range(blocks):
                stride = 2 if (stage > 0 and index == 0) else 1
                layers[f"stage{stage + 1}_block{index + 1}"] = BasicBlock(channels, width, stride, option_a)
                channels = width
        self.blocks = nn.ModuleDict(layers)
        self.output_dim = channels

    def forward(self, images):
        x = (images / 255.0 - self.mean) / self.std
        x = functional.relu(self.stem_bn(self.stem_conv(x)))
        for block in self.blocks.values():
            x = block(x)
        return x.mean(dim=(2, 3))


class Projector(nn.Module):
    """Linear, BatchNorm without affine parameters, ReLU, Linear."""

    def __init__(self, input_dim, hidden_dim, output_dim):
        super().__init__()
        self.dense_1 = nn.Linear(input_dim, hidden_dim)
        self.bn = nn.BatchNorm1d(hidden_dim, eps=BN_EPSILON, momentum=BN_MOMENTUM, affine=False)
        self.dense_2 = nn.Linear(hidden_dim, output_dim)

    def forward(self, x):
        return self.dense_2(functional.relu(self.bn(self.dense_1(x))))


class DirectCopyPredictor:
    """`W_p = F / lambda_max(F) + eps I`, `F` the running correlation of the
    online projections, updated after the optimizer step; the first update
    sets `F` to the batch statistic; `W_p` is the identity before it."""

    def __init__(self, dim, rho=0.3, eps=0.1, dtype=torch.float32):
        self.rho, self.eps, self.dtype = rho, eps, dtype
        self.correlation = torch.zeros(dim, dim, dtype=dtype)
        self.matrix = torch.eye(dim, dtype=dtype)
        self.top_vector = torch.randn(dim, generator=torch.Generator().manual_seed(1234)).to(dtype)
        self.num_updates = 0

    def update(self, features):
        batch = features.T @ features / features.shape[0]
        self.correlation = batch if self.num_updates == 0 else (
            self.rho * self.correlation + (1 - self.rho) * batch)
        largest, self.top_vector = top_eigenpair(self.correlation, self.top_vector)
        identity = torch.eye(len(self.correlation), dtype=self.dtype)
        self.matrix = (self.eps * identity if largest <= torch.finfo(self.dtype).tiny
                       else self.correlation / largest + self.eps * identity)
        self.num_updates += 1


def top_eigenpair(matrix, start):
    """The largest eigenvalue and its unit eigenvector of a symmetric PSD
    `matrix`, by power iteration from `start` (Rayleigh quotient converged to
    a relative `POWER_ITERATION_TOLERANCE`), as our DirectCopy."""
    tiny = torch.finfo(matrix.dtype).tiny
    vector = start / torch.linalg.vector_norm(start).clamp_min(tiny)
    value, previous = -1.0, -2.0
    for _ in range(POWER_ITERATION_MAX_STEPS):
        if abs(value - previous) <= POWER_ITERATION_TOLERANCE * abs(value):
            break
        product = matrix @ vector
        previous, value = value, float(vector @ product)
        vector = product / torch.linalg.vector_norm(product).clamp_min(tiny)
    return max(float(vector @ matrix @ vector), 0.0), vector


class DirectCopyStep:
    """Online and target networks, optimizer and predictor; `step(views)`
    trains one batch of `(B, 2, 3, H, W)` float images in 0..255."""

    def __init__(self, backbone, mean, std, width_multiplier=1.0, projector_dims=(512, 128), lr=0.03,
                 momentum=0.9, weight_decay=4e-4, tau=0.996, rho=0.3, eps=0.1,
                 channels_last=False, dtype=torch.float32):
        def network():
            encoder = ResNet(backbone, mean, std, width_multiplier)
            return encoder, Projector(encoder.output_dim, *projector_dims)

        self.encoder, self.projector = network()
        self.target_encoder, self.target_projector = network()  # independent init, as the reference
        for module in (self.encoder, self.projector, self.target_encoder, self.target_projector):
            module.to(dtype)
        for module in (self.target_encoder, self.target_projector):
            module.requires_grad_(False)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        for module in (self.encoder, self.target_encoder):
            module.to(memory_format=self.memory_format)
        self.online_parameters = list(self.encoder.parameters()) + list(self.projector.parameters())
        self.optimizer = torch.optim.SGD(self.online_parameters, lr=lr, momentum=momentum,
                                         weight_decay=weight_decay)
        self.predictor = DirectCopyPredictor(projector_dims[1], rho=rho, eps=eps, dtype=dtype)
        self.tau = tau
        self.forward = self._forward

    def compile(self, **options):
        """Compiles the forward and loss with `torch.compile`."""
        self.forward = torch.compile(self._forward, **options)

    def _forward(self, view1, view2, predictor_matrix):
        with torch.no_grad():
            target1 = self.target_projector(self.target_encoder(view1))
            target2 = self.target_projector(self.target_encoder(view2))
        z1 = self.projector(self.encoder(view1))
        z2 = self.projector(self.encoder(view2))
        p1, p2 = z1 @ predictor_matrix, z2 @ predictor_matrix
        loss = (_normalized_mse(p1, target2) + _normalized_mse(p2, target1)).mean()
        return loss, torch.cat([z1, z2]).detach()

    def step(self, views):
        """One training step; returns the loss (a float)."""
        view1 = views[:, 0].contiguous(memory_format=self.memory_format)
        view2 = views[:, 1].contiguous(memory_format=self.memory_format)
        for module in (self.encoder, self.projector, self.target_encoder, self.target_projector):
            module.train()
        loss, features = self.forward(view1, view2, self.predictor.matrix)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.predictor.update(features)
        with torch.no_grad():
            online = self.online_parameters
            target = list(self.target_encoder.parameters()) + list(self.target_projector.parameters())
            torch._foreach_lerp_(target, online, 1.0 - self.tau)
        return float(loss)


def _normalized_mse(prediction, target):
    prediction = functional.normalize(prediction, dim=1)
    target = functional.normalize(target, dim=1)
    return 2.0 - 2.0 * (prediction * target).sum(dim=1)


def modules_by_keras_name(module):
    """`{Keras layer name: submodule}`: `blocks.stage1_block1.conv1` is the
    Keras layer `stage1_block1_conv1`; the projector's `dense_1` is
    `projector_dense_1` without its prefix."""
    return {name.replace("blocks.", "").replace(".", "_"): submodule
            for name, submodule in module.named_modules() if name}


def copy_keras_weights(step, model):
    """Copies a keras_directcopy `NonContrastiveModel`'s online and target
    weights (and BatchNorm statistics) into `step`, by layer name."""
    pairs = [(step.encoder, model.encoder), (step.projector, model.projector),
             (step.target_encoder, model.target_encoder), (step.target_projector, model.target_projector)]
    for torch_module, keras_model in pairs:
        modules = modules_by_keras_name(torch_module)
        for layer in keras_model.layers:
            weights = layer.get_weights()
            if not weights or layer.name == "normalize":  # the input statistics are the peer's own
                continue
            module = modules[layer.name.removeprefix("projector_")]
            with torch.no_grad():
                if isinstance(module, nn.Conv2d):
                    module.weight.copy_(torch.from_numpy(weights[0]).permute(3, 2, 0, 1))
                elif isinstance(module, nn.Linear):
                    module.weight.copy_(torch.from_numpy(weights[0]).T)
                    module.bias.copy_(torch.from_numpy(weights[1]))
                elif module.affine:  # gamma, beta, moving mean, moving variance
                    for target, value in zip((module.weight, module.bias, module.running_mean,
                                              module.running_var), weights):
                        target.copy_(torch.from_numpy(value))
                else:
                    module.running_mean.copy_(torch.from_numpy(weights[0]))
                    module.running_var.copy_(torch.from_numpy(weights[1]))
    predictor, dtype = model.predictor, step.predictor.dtype
    step.predictor.correlation = torch.from_numpy(predictor.correlation.numpy()).to(dtype)
    step.predictor.matrix = torch.from_numpy(predictor.matrix.numpy()).to(dtype)
    step.predictor.top_vector = torch.from_numpy(predictor.top_eigenvector.numpy()).to(dtype)
    step.predictor.num_updates = int(predictor.num_updates.numpy())


MODES = ("eager", "channels_last", "compile")


def measure(backbone, mode, batch_size, warmup_steps, steps, mean, std, size=32, **recipe):
    """Times the peer step in this process on one random batch, repeated.

    Args:
        backbone: `"resnet20"` or `"resnet18"`.
        mode: `"eager"` (NCHW), `"channels_last"` (eager, NHWC memory
            format) or `"compile"` (`torch.compile` of the forward and loss,
            channels-last).
        batch_size, warmup_steps, steps: as `step_timing.measure`.
        mean, std: the input statistics.
        **recipe: `DirectCopyStep` arguments (lr, momentum, weight_decay, ...).

    Returns:
        A dict: `mode`, `pairs_per_s`, `step_ms`, `threads`, `peak_mb`
        (process peak resident set size).
    """
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)  # TensorFlow's default: every usable core
    torch.manual_seed(0)
    step = DirectCopyStep(backbone, mean, std, channels_last=mode != "eager", **recipe)
    if mode == "compile":
        step.compile()
    views = torch.randint(0, 256, (batch_size, 2, 3, size, size)).float()
    for _ in range(warmup_steps):
        step.step(views)
    start = time.perf_counter()
    for _ in range(steps):
        step.step(views)
    seconds = (time.perf_counter() - start) / steps
    return dict(mode=mode, pairs_per_s=batch_size / seconds, step_ms=1000 * seconds, threads=threads,
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
