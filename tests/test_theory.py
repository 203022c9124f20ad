"""The linear-network theory lab against its closed-form predictions.

Notation of `keras_directcopy.theory.linear_network`: data variance `x_i`, augmentation
variance `sigma_i^2`, weight decay `eta`, predictor regularizer `eps`, growth
rate `g(p) = p x - p^2 (x + sigma^2) - eta`.
"""

from pathlib import Path

import numpy as np
import pytest

from keras_directcopy.theory import linear_network

ROOT = Path(__file__).resolve().parents[1]
EPS = 0.2
METHODS = linear_network.METHODS


def random_psd(dim, seed):
    features = np.random.default_rng(seed).standard_normal((2 * dim, dim))
    return features.T @ features / (2 * dim)


# --- Closed forms and predictor rules -----------------------------------------


def test_predictor_rules_of_the_lab():
    F = random_psd(6, seed=0)
    s, u = np.linalg.eigh(F)
    identity = np.eye(6)
    # Float64 throughout: only rounding separates the rules from their formulas.
    np.testing.assert_allclose(
        linear_network.predictor_matrix(F, "directcopy", 0.3), F + 0.3 * identity, atol=1e-12
    )
    np.testing.assert_allclose(
        linear_network.predictor_matrix(F, "directpred", 0.3),
        (u * np.sqrt(s)) @ u.T + 0.3 * identity,
        atol=1e-10,
    )
    # The normalized DirectCopy finds lambda_max by power iteration, which
    # stops at a 1e-7 relative change: hence the looser tolerance.
    np.testing.assert_allclose(
        linear_network.predictor_matrix(F, "directcopy", 0.3, "spectral"),
        F / s[-1] + 0.3 * identity,
        atol=1e-6,
    )
    for method in METHODS:
        top = np.linalg.eigvalsh(linear_network.predictor_matrix(F, method, 0.3, "spectral"))[-1]
        assert top == pytest.approx(1.3, abs=1e-6)
    np.testing.assert_array_equal(
        linear_network.predictor_matrix(np.zeros((3, 3)), "directpred", 0.3), 0.3 * np.eye(3)
    )


def test_thresholds_are_the_roots_of_the_growth_rate():
    x = np.array([0.5, 1.0, 2.0])
    for eta in [0.0, 0.02, 0.05]:
        sigma2 = linear_network.growth_threshold(x, eta, EPS)
        np.testing.assert_allclose(linear_network.growth_rate(EPS, x, sigma2, eta), 0.0, atol=1e-12)
    eta = 0.05
    bound = linear_network.fixed_point_threshold(x, eta)
    p_minus, p_plus = linear_network.fixed_points(x, bound, eta)
    np.testing.assert_allclose(p_minus, p_plus, rtol=1e-6)  # double root at the bound
    p_minus, p_plus = linear_network.fixed_points(x, bound - 0.1, eta)
    np.testing.assert_allclose(linear_network.growth_rate(p_plus, x, bound - 0.1, eta), 0.0, atol=1e-12)
    np.testing.assert_allclose(linear_network.growth_rate(p_minus, x, bound - 0.1, eta), 0.0, atol=1e-12)
    assert np.all(np.isnan(linear_network.fixed_points(x, bound + 0.1, eta)[1]))
    assert np.all(np.isinf(linear_network.fixed_point_threshold(x, 0.0)))
    p = EPS + np.array([0.01, 0.3, 1.0])
    for method in METHODS:
        norms = linear_network.norm_from_predictor_eigenvalue(p, x, 1.5, EPS, method)
        np.testing.assert_allclose(
            linear_network.predictor_eigenvalue(norms, x, 1.5, EPS, method), p, rtol=1e-12
        )


# --- Population gradient flow ---------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("target_momentum", [0.0, 0.9])
def test_full_matrix_flow_follows_the_eigenbasis_equation(method, target_momentum):
    """From an aligned W, the (d_out, d) matrix flow in a rotated basis is the
    per-direction equation dw_i/dt = w_i g_i(p_i), step for step."""
    sigma2 = np.array([0.0, 0.7, 1.4, 2.1, 2.8, 3.5, 4.2, 4.9])
    setting = linear_network.make_setting(1.0, sigma2, seed=1)
    result = linear_network.simulate_population(
        setting, method, 0.05, EPS, steps=600, output_dim=10,
        target_momentum=target_momentum, record_every=50,
    )
    steps, expected = linear_network.eigen_dynamics(
        setting.data_variance, sigma2, 0.05, EPS, method, 1e-3, result.learning_rate, 600,
        target_momentum=target_momentum, record_every=50,
    )
    np.testing.assert_array_equal(result.steps, steps)
    # Same recursion in a different basis: only rounding differs. Decayed
    # directions end at ~1e-16 absolute, the rounding floor of W @ u_i with
    # entries of order 1, hence the absolute term.
    np.testing.assert_allclose(result.norms, expected, rtol=1e-8, atol=1e-12)
    # Both behaviours occur in the run: growth inside the threshold, decay outside.
    np.testing.assert_array_equal(
        expected[-1] > 1e-3, sigma2 < linear_network.growth_threshold(1.0, 0.05, EPS)
    )


@pytest.mark.parametrize("method", METHODS)
def test_directions_are_kept_or_discarded_with_a_margin(method):
    """From a generic (not aligned) small W, every direction inside the growth
    condition by 0.5 in sigma^2 reaches its fixed point, every one outside by
    0.5 is driven to ~0, and W keeps exactly the span of the former."""
    eta = 0.05
    threshold = linear_network.growth_threshold(1.0, eta, EPS)  # 2.75
    inside = np.array([0.0, 0.4, 0.8, 1.2, 1.6, 2.25])
    outside = np.array([3.25, 3.6, 4.0, 4.5, 5.0, 5.5])
    assert inside.max() <= threshold - 0.5 and outside.min() >= threshold + 0.5
    sigma2 = np.r_[inside, outside]
    setting = linear_network.make_setting(1.0, sigma2, seed=2)
    result = linear_network.simulate_population(
        setting, method, eta, EPS, steps=4800, init="gaussian", record_every=4800, seed=3
    )
    kept = np.arange(len(sigma2)) < len(inside)
    predicted = linear_network.predicted_final_norms(1.0, sigma2, eta, EPS, method, 1e-3)
    assert np.all(predicted[kept] > 0.02) and np.all(predicted[~kept] == 0)
    # Kept: the slowest (sigma^2 = 2.25) grows at rate >= eps^2 * 0.5 = 0.02
    # and then converges at rate ~0.05; t = 4800 * lr ~ 800 leaves it far
    # closer than 1e-3 (relative) to the fixed point.
    np.testing.assert_allclose(result.final_norms[kept], predicted[kept], rtol=1e-3)
    # Discarded: decay at rate >= 0.02 from ~1e-3 over t ~ 800 gives
    # ~1e-10; 1e-6 leaves room for the transient of the unaligned start.
    assert np.all(result.final_norms[~kept] < 1e-6)
    learned = result.learned_subspace(level=1e-4)
    assert linear_network.subspace_distance(learned, setting.basis[:, kept]) < 1e-5


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("eta", [0.02, 0.05, 0.1])
def test_empirical_threshold_matches_the_growth_condition(method, eta):
    spacing = 0.1
    # Offset grid: no direction sits on a predicted threshold (3.5, 2.75, 1.5).
    sigma2 = 0.03 + spacing * np.arange(60)
    setting = linear_network.make_setting(1.0, sigma2, seed=4)
    init = 1e-6
    result = linear_network.simulate_population(
        setting, method, eta, EPS, steps=1000, init_scale=init, record_every=1000
    )
    # From an aligned start each p_i moves monotonically with the sign of
    # g_i(p_i), so "ended above its start" is exactly "grew".
    kept = result.final_norms > init
    empirical = linear_network.empirical_threshold(sigma2, kept)
    predicted = linear_network.growth_threshold(1.0, eta, EPS)
    assert empirical is not None, "kept directions are not exactly the low-variance ones"
    # The formula is for p(0) = eps; the start has p(0) - eps <= 1e-6 * sqrt(7)
    # (DirectPred), which moves the threshold by at most
    # (p(0) - eps) |g'(eps)| / eps^2 < 1e-3. So the predicted threshold must
    # lie between the last kept and the first discarded direction, i.e.
    # within half a grid spacing of the midpoint.
    assert sigma2[kept].max() < predicted + 1e-3
    assert sigma2[~kept].min() > predicted - 1e-3
    assert abs(empirical - predicted) <= spacing / 2 + 1e-3


@pytest.mark.parametrize("method", METHODS)
def test_without_weight_decay_high_variance_directions_survive(method):
    """sigma^2 in 3.0..3.5 fails the growth condition at eta = 0.05 (threshold
    2.75) but meets it at eta = 0 (threshold x (1 - eps) / eps = 4)."""
    sigma2 = np.array([0.5, 1.5, 3.0, 3.25, 3.5, 4.5, 5.0])
    high = (sigma2 >= 3.0) & (sigma2 <= 3.5)
    assert np.all(sigma2[high] > linear_network.growth_threshold(1.0, 0.05, EPS))
    assert np.all(sigma2[high] <= linear_network.growth_threshold(1.0, 0.0, EPS) - 0.5 + 1e-12)
    setting = linear_network.make_setting(1.0, sigma2, seed=5)
    result = linear_network.simulate_population(setting, method, 0.0, EPS, steps=1600, record_every=1600)
    predicted = linear_network.predicted_final_norms(1.0, sigma2, 0.0, EPS, method, 1e-3)
    # Without weight decay the fixed point is p_+ = x / (x + sigma^2).
    p_plus = 1.0 / (1.0 + sigma2[high])
    np.testing.assert_allclose(
        linear_network.predictor_eigenvalue(predicted[high], 1.0, sigma2[high], EPS, method), p_plus
    )
    # Rate >= eps^2 * 0.5 = 0.02 over t = 1600 * lr = 600 (lr = 0.375):
    # converged to far better than 1e-3.
    np.testing.assert_allclose(result.final_norms[sigma2 <= 3.5], predicted[sigma2 <= 3.5],
                               rtol=1e-3)
    assert np.all(result.final_norms[sigma2 > 4.0] < 1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_fixed_points_exist_only_below_their_bound(method):
    """With eta > eps x nothing grows from a small start, but a large start
    converges to p_+ wherever sigma^2 < x^2 / (4 eta) - x (= 4 here), and
    decays to 0 above it."""
    eps, eta = 0.02, 0.05
    sigma2 = np.array([0.0, 1.0, 2.0, 3.0, 5.0, 6.0])
    below = sigma2 < linear_network.fixed_point_threshold(1.0, eta)
    setting = linear_network.make_setting(1.0, sigma2, seed=6)
    # Start at p = x / (x + sigma^2) + eps, above every p_+ (<= x / (x + sigma^2)).
    start = linear_network.norm_from_predictor_eigenvalue(
        1.0 / (1.0 + sigma2) + eps, 1.0, sigma2, eps, method
    )
    large = linear_network.simulate_population(
        setting, method, eta, eps, steps=3000, init_scale=start, record_every=3000
    )
    small = linear_network.simulate_population(
        setting, method, eta, eps, steps=500, init_scale=1e-3, record_every=500
    )
    assert np.all(small.final_norms < 1e-3)  # g(eps) < 0 everywhere
    predicted = linear_network.predicted_final_norms(1.0, sigma2, eta, eps, method, start)
    assert np.all(predicted[below] > 0) and np.all(predicted[~below] == 0)
    np.testing.assert_allclose(large.final_norms[below], predicted[below], rtol=1e-6)
    # Above the bound g < 0 for every p, at least -0.014 near the vertex and
    # -0.03 near eps, over t = 3000 * lr ~ 400: a decay by more than 1e-4.
    assert np.all(large.final_norms[~below] < 1e-4 * start[~below])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("eta", [0.0, 0.05])
def test_normalized_predictor_decays_every_direction(method, eta):
    """With W_p normalized by lambda_max the top direction has p = 1 + eps and
    g_top <= -eps (1 + eps) x - eta: the largest s_i = w_i^2 (x_i + sigma_i^2)
    falls monotonically, at least as fast as that rate, even with eta = 0."""
    sigma2 = np.linspace(0.0, 5.5, 8)
    setting = linear_network.make_setting(1.0, sigma2, seed=7)
    lr = 0.5 * linear_network.stable_learning_rate(1.0, sigma2, eta, EPS, method, "spectral")
    steps = int(30 / lr)
    result = linear_network.simulate_population(
        setting, method, eta, EPS, "spectral", learning_rate=lr, steps=steps, record_every=1
    )
    largest = (result.norms**2 * (1.0 + sigma2)).max(axis=1)
    assert np.all(np.diff(largest) <= 0)
    # Per step the top s shrinks by (1 + lr g_top)^2 <= exp(2 lr g_top).
    bound = np.exp(-2.0 * (EPS * (1 + EPS) + eta) * result.times[-1])
    assert largest[-1] / largest[0] <= bound
    # So every norm is at most sqrt(bound * largest[0] / (x_i + sigma_i^2)),
    # 2e-6 for bound = 6e-7 (eta = 0), from its start at 1e-3.
    assert np.all(result.final_norms < 1e-5)


def test_sgd_on_samples_keeps_the_predicted_directions():
    eta = 0.05
    sigma2 = np.r_[0.5 * np.ones(4), 5.0 * np.ones(6)]  # threshold 2.75
    setting = linear_network.make_setting(1.0, sigma2, seed=8)
    result = linear_network.simulate_sgd(
        setting, "directcopy", eta, EPS, steps=1000, batch_size=256, record_every=1000, seed=9
    )
    predicted = linear_network.predicted_final_norms(1.0, sigma2, eta, EPS, "directcopy", 1e-3)
    kept = predicted > 0
    assert kept.sum() == 4
    # SGD fluctuates around the population fixed point: F is a running mean
    # of 512-row batch correlations (rho = 0.3), a few percent of noise; 10%
    # is several of its standard deviations.
    np.testing.assert_allclose(result.final_norms[kept], predicted[kept], rtol=0.1)
    # Discarded directions sit at the SGD noise floor (a few percent of the
    # kept norm with this batch and step), not at 0.
    assert np.all(result.final_norms[~kept] < 0.15 * predicted[kept].min())


# --- Downstream sample complexity ---------------------------------------------


def test_ridge_leave_one_out_matches_refitting():
    rng = np.random.default_rng(10)
    features = rng.standard_normal((12, 5))
    labels = features @ rng.standard_normal(5) + 0.5 * rng.standard_normal(12)
    scale = np.sum(features**2) / features.size
    candidates = [1e-3, 1e-1, 1.0, 10.0]

    def brute_force_loo(lam):
        errors = []
        for i in range(12):
            keep = np.arange(12) != i
            a = np.linalg.solve(
                features[keep].T @ features[keep] / 12 + lam * scale * np.eye(5),
                features[keep].T @ labels[keep] / 12,
            )
            errors.append((features[i] @ a - labels[i]) ** 2)
        return np.mean(errors)

    # The penalty is n * lam * m on the sum of squares; the refits keep the
    # same penalty, so leave-one-out by refitting is exact.
    best = candidates[int(np.argmin([brute_force_loo(lam) for lam in candidates]))]
    expected = np.linalg.solve(
        features.T @ features / 12 + best * scale * np.eye(5), features.T @ labels / 12
    )
    np.testing.assert_allclose(linear_network.ridge_fit(features, labels, candidates), expected,
                               rtol=1e-10)


def test_learned_features_need_fewer_labelled_samples():
    eta = 0.05
    num_signal, num_nuisance = 6, 24
    data_variance = np.r_[np.ones(num_signal), 2.0 * np.ones(num_nuisance)]
    sigma2 = np.r_[0.5 * np.ones(num_signal), 8.0 * np.ones(num_nuisance)]
    setting = linear_network.make_setting(data_variance, sigma2, seed=11)
    learned = linear_network.simulate_population(
        setting, "directcopy", eta, EPS, steps=600, record_every=600
    )
    # The label's directions are exactly the kept ones.
    kept = learned.final_norms > 1e-3
    np.testing.assert_array_equal(kept, np.arange(setting.dim) < num_signal)
    coefficients = np.r_[np.random.default_rng(12).standard_normal(num_signal),
                         np.zeros(num_nuisance)]
    sizes = [4, 8, 12, 16]
    errors = linear_network.sample_complexity(
        setting, {"raw": np.eye(setting.dim), "learned": learned.weights}, coefficients,
        sizes, trials=50, noise_std=0.3, seed=13,
    )
    raw, features = errors["raw"][0], errors["learned"][0]
    # Below n = d = 30 a fit on raw inputs sees at most an n-dimensional
    # slice of the input space, most of it nuisance: its error stays near
    # that of predicting 0. The learned features span the 6 label directions
    # only, so from about n = 2 * 6 the fit is nearly exact.
    assert np.all(features < raw)
    assert np.all(raw > 0.7)
    assert np.all(features[2:] < 0.3 * raw[2:])
