"""The view-batching measurement (`benchmarks/throughput/view_batching.py`) compares equal
work: one batch with per-view BatchNorm statistics is the step we train with
(two batches), and one batch with shared statistics is not."""

import keras
import numpy as np
import pytest
from view_batching import (
    VIEW_BATCHING_MODES,
    encoder_step,
    normalize_views_separately,
    view_batching_throughput,
)

from keras_directcopy.models.backbones import build_backbone
from keras_directcopy.models.fused_batchnorm import use_fused_kernel

SIZE = 16


def state_after_two_steps(mode, views):
    """Loss of each step, then every online and target variable after them."""
    keras.utils.set_random_seed(0)
    online, target = (build_backbone("resnet20", (SIZE, SIZE, 3)) for _ in range(2))
    for encoder in (online, target):
        use_fused_kernel(encoder)
        if mode == "one_batch_per_view_statistics":
            assert normalize_views_separately(encoder) == 19  # ResNet-20's BatchNorm layers
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(online.trainable_variables)
    step = encoder_step(mode, online, target, optimizer)
    losses = [float(step(*views)) for _ in range(2)]
    return losses, [v.numpy() for v in online.variables + target.variables]


def random_views():
    rng = np.random.default_rng(1)
    # Different distributions per view, so that per-view and shared
    # statistics differ clearly.
    return (rng.uniform(0, 255, (8, SIZE, SIZE, 3)).astype(np.float32),
            rng.uniform(0, 100, (8, SIZE, SIZE, 3)).astype(np.float32))


def test_one_batch_with_per_view_statistics_is_the_two_batch_step():
    views = random_views()
    losses, variables = state_after_two_steps("two_batches", views)
    per_view_losses, per_view_variables = state_after_two_steps("one_batch_per_view_statistics", views)
    np.testing.assert_allclose(per_view_losses, losses, rtol=1e-5)
    assert len(per_view_variables) == len(variables)
    # Weights, BatchNorm parameters and moving statistics of both encoders.
    for expected, got in zip(variables, per_view_variables):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_one_batch_with_shared_statistics_is_other_math():
    views = random_views()
    losses, variables = state_after_two_steps("two_batches", views)
    shared_losses, shared_variables = state_after_two_steps("one_batch", views)
    assert not np.allclose(shared_losses, losses, rtol=1e-3)
    assert any(not np.allclose(a, b, rtol=1e-3) for a, b in zip(variables, shared_variables))


def test_throughput_is_timed_per_mode_and_round():
    throughput = view_batching_throughput("resnet20", 4, warmup_steps=1, steps=1, rounds=2, image_size=SIZE)
    assert list(throughput) == list(VIEW_BATCHING_MODES)
    for rounds in throughput.values():
        assert len(rounds) == 2 and all(pairs_per_s > 0 for pairs_per_s in rounds)


def test_an_unknown_mode_is_refused_with_the_valid_ones():
    encoder = build_backbone("resnet20", (SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="two_batches, one_batch, one_batch_per_view_statistics"):
        encoder_step("interleaved", encoder, encoder, keras.optimizers.SGD())
