"""Synthetic tasks, each checked against an independent NumPy computation."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.data import pipeline, synthetic
from neurojax.metrics.curvature import dense_hessian
from neurojax.metrics.spectrum import alpha as fit_alpha

KEY = jax.random.key(0)

# Each task at the sizes the statistical tests below need: every distinct
# size compiles once (about a second on 2 cores), so the tests share them.
TASKS = {
    "teacher_student": functools.partial(
        synthetic.teacher_student, num_examples=64, input_dim=5, depth=3, width=7, noise=0.1
    ),
    "power_law_gaussian": functools.partial(
        synthetic.power_law_gaussian, num_examples=100_000, dim=8, alpha=1.0
    ),
    "two_spirals": functools.partial(synthetic.two_spirals, num_examples=64, noise=0.1),
    "checkerboard": functools.partial(
        synthetic.checkerboard, num_examples=4000, num_tiles=3, noise=0.1
    ),
    "noisy_sinusoid": functools.partial(synthetic.noisy_sinusoid, num_examples=20000, noise=0.1),
}


NOISY = ["teacher_student", "two_spirals", "checkerboard", "noisy_sinusoid"]

# ------------------------------------------------------------ contracts


@pytest.mark.parametrize("name", sorted(TASKS))
def test_same_key_same_data_other_key_other_data(name):
    task = TASKS[name]
    chex.assert_trees_all_equal(task(KEY), task(KEY))
    assert not np.array_equal(task(KEY)["x"], task(jax.random.key(1))["x"])


# The float hyperparameter each task may take traced under jit.
TRACEABLE = {
    "teacher_student": "noise",
    "power_law_gaussian": "alpha",
    "two_spirals": "noise",
    "checkerboard": "noise",
    "noisy_sinusoid": "noise",
}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_jit_with_traced_hyperparameter_matches_eager(name):
    task, arg = TASKS[name], TRACEABLE[name]
    jitted = jax.jit(lambda key, value: task(key, **{arg: value}))
    chex.assert_trees_all_close(jitted(KEY, 0.3), task(KEY, **{arg: 0.3}), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NOISY)
def test_noise_perturbs_the_same_clean_draw(name):
    task = TASKS[name]
    clean, noisy = task(KEY, noise=0.0), task(KEY, noise=0.5)
    target = "x" if name in ("two_spirals", "checkerboard") else "y"
    untouched = "y" if target == "x" else "x"
    np.testing.assert_array_equal(clean[untouched], noisy[untouched])
    delta = np.asarray(noisy[target] - clean[target])
    assert np.all(delta != 0) and 0.3 < delta.std() < 0.7


# ------------------------------------------------------------ teacher-student


def _np_teacher(weights, x, activation):
    """NumPy float64 re-implementation of the teacher forward pass."""
    act = {"linear": lambda h: h, "relu": lambda h: np.maximum(h, 0), "tanh": np.tanh}
    h = np.asarray(x, np.float64)
    for i, w in enumerate(weights):
        h = h @ np.asarray(w, np.float64)
        if i < len(weights) - 1:
            h = act[activation](h)
    return h


@pytest.mark.parametrize(
    "activation, depth", [("linear", 1), ("linear", 3), ("relu", 3), ("tanh", 3)]
)
def test_teacher_targets_match_numpy_forward(activation, depth):
    data = synthetic.teacher_student(
        KEY, num_examples=100, input_dim=6, output_dim=2, depth=depth, width=9,
        activation=activation, noise=0.0,
    )
    chex.assert_shape(data["x"], (100, 6))
    chex.assert_shape(data["y"], (100, 2))
    assert [w.shape for w in data["params"]] == (
        [(6, 2)] if depth == 1 else [(6, 9), (9, 9), (9, 2)]
    )
    expected = _np_teacher(data["params"], data["x"], activation)
    np.testing.assert_allclose(data["y"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(data["y"], data["y_clean"])


def test_teacher_does_not_depend_on_num_examples():
    small, large = TASKS["teacher_student"](KEY), TASKS["teacher_student"](KEY, num_examples=65)
    chex.assert_trees_all_equal(small["params"], large["params"])


def test_teacher_label_noise_and_weight_scale():
    data = synthetic.teacher_student(
        KEY, num_examples=20000, input_dim=50, depth=2, width=400, noise=0.2
    )
    residual = np.asarray(data["y"] - data["y_clean"])
    assert abs(residual.mean()) < 0.01 and abs(residual.std() - 0.2) < 0.01
    np.testing.assert_allclose(np.asarray(data["x"]).std(), 1.0, atol=0.02)
    first = np.asarray(data["params"][0])
    np.testing.assert_allclose(first.var(), 1 / 50, rtol=0.05)  # N(0, 1/fan_in)


# ------------------------------------------------------------ power law


def test_power_law_spectrum_rotation_and_covariance():
    data = TASKS["power_law_gaussian"](KEY, alpha=1.3, scale=2.0)
    j = np.arange(1, 9)
    lam = 2.0 * j**-1.3
    np.testing.assert_allclose(data["eigenvalues"], lam, rtol=1e-6)
    r = np.asarray(data["rotation"], np.float64)
    np.testing.assert_allclose(r.T @ r, np.eye(8), atol=1e-5)
    np.testing.assert_allclose(data["covariance"], r @ np.diag(lam) @ r.T, rtol=1e-5, atol=1e-6)


def test_power_law_sample_covariance_matches_theory():
    data = TASKS["power_law_gaussian"](KEY, alpha=1.0)
    x = np.asarray(data["x"], np.float64)
    sample_cov = x.T @ x / len(x)  # the mean is zero by construction
    r, lam = np.asarray(data["rotation"], np.float64), np.asarray(data["eigenvalues"])
    np.testing.assert_allclose(lam, 1.0 / np.arange(1, 9), rtol=1e-6)
    # Entry std of a sample covariance is about sqrt(2 / n) * lambda_max ~ 0.005.
    np.testing.assert_allclose(sample_cov, r @ np.diag(lam) @ r.T, atol=0.025)
    np.testing.assert_allclose(np.linalg.eigvalsh(sample_cov)[::-1], lam, rtol=0.05)
    # In the rotated basis the coordinates are independent with variance lambda.
    np.testing.assert_allclose((x @ r).var(axis=0), lam, rtol=0.03)


def test_haar_orthogonal_is_unbiased():
    # Plain QR has a biased Q (its diagonal has a sign pattern); Haar does not.
    keys = jax.random.split(KEY, 2000)
    q = np.asarray(jax.vmap(lambda k: synthetic.haar_orthogonal(k, 3))(keys), np.float64)
    gram = np.einsum("nij,nkj->nik", q, q)
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(3), gram.shape), atol=1e-5)
    assert np.all(np.abs(q.mean(axis=0)) < 0.05)  # E[Q] = 0 under Haar
    assert abs(np.linalg.det(q).mean()) < 0.1  # det = +1 and -1 equally often


# ------------------------------------------------------------ toy tasks


def test_two_spirals_geometry():
    turns = 1.5
    data = TASKS["two_spirals"](KEY, turns=turns, noise=0.0)
    x, y = np.asarray(data["x"], np.float64), np.asarray(data["y"])
    chex.assert_shape(x, (64, 2))
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, np.arange(64) % 2)
    # Independently: each point is +-r (cos, sin)(2 pi turns r) with r = |x|.
    r = np.linalg.norm(x, axis=1)
    assert r.max() <= 1.0
    theta = 2 * np.pi * turns * r
    sign = np.where(y == 0, 1.0, -1.0)[:, None]
    expected = sign * r[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    np.testing.assert_allclose(x, expected, atol=1e-4)


def test_checkerboard_labels_match_tiles():
    data = TASKS["checkerboard"](KEY, noise=0.0)  # 3 tiles a side
    x, y = np.asarray(data["x"], np.float64), np.asarray(data["y"])
    assert x.min() >= -1 and x.max() <= 1 and y.dtype == np.int32
    col = np.minimum((x[:, 0] + 1) * 1.5, 2.999).astype(int)  # tile width 2/3
    row = np.minimum((x[:, 1] + 1) * 1.5, 2.999).astype(int)
    np.testing.assert_array_equal(y, (col + row) % 2)
    assert 0.4 < y.mean() < 0.6


def test_noisy_sinusoid_matches_formula():
    data = TASKS["noisy_sinusoid"](KEY, frequency=2.0, amplitude=0.5, phase=0.3, noise=0.1)
    x = np.asarray(data["x"], np.float64)
    chex.assert_shape(data["y"], (20000, 1))
    assert -1 <= x.min() and x.max() <= 1
    np.testing.assert_allclose(data["y_clean"], 0.5 * np.sin(4 * np.pi * x + 0.3), atol=1e-5)
    assert abs(np.asarray(data["y"] - data["y_clean"]).std() - 0.1) < 0.005


def test_synthetic_data_through_the_loader():
    source = pipeline.ArraySource(TASKS["two_spirals"](KEY))
    batches = list(pipeline.make_loader(source, batch_size=32, seed=0))
    assert len(batches) == 2
    chex.assert_shape(batches[0]["x"], (32, 2))
    assert batches[0]["y"].dtype == np.int32


# ------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "fn, kwargs, arg",
    [
        (synthetic.teacher_student, {"num_examples": 0, "input_dim": 3}, "num_examples"),
        (synthetic.teacher_student, {"num_examples": 4, "input_dim": 2.0}, "input_dim"),
        (synthetic.teacher_student, {"num_examples": 4, "input_dim": 3, "depth": 0}, "depth"),
        (synthetic.teacher_student, {"num_examples": 4, "input_dim": 3, "width": -1}, "width"),
        (
            synthetic.teacher_student,
            {"num_examples": 4, "input_dim": 3, "activation": "gelu"},
            "activation",
        ),
        (synthetic.teacher_student, {"num_examples": 4, "input_dim": 3, "noise": -0.1}, "noise"),
        (synthetic.power_law_gaussian, {"num_examples": 4, "dim": 0}, "dim"),
        (synthetic.power_law_gaussian, {"num_examples": 4, "dim": 3, "alpha": -1.0}, "alpha"),
        (synthetic.power_law_gaussian, {"num_examples": 4, "dim": 3, "scale": 0.0}, "scale"),
        (synthetic.two_spirals, {"num_examples": 4, "turns": 0.0}, "turns"),
        (synthetic.two_spirals, {"num_examples": 4, "noise": float("nan")}, "noise"),
        (synthetic.checkerboard, {"num_examples": 4, "num_tiles": 0}, "num_tiles"),
        (synthetic.noisy_sinusoid, {"num_examples": True}, "num_examples"),
        (synthetic.noisy_sinusoid, {"num_examples": 4, "noise": -1.0}, "noise"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(fn, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        fn(KEY, **kwargs)


# --------------------------------------------------------------------------
# Power-law regression (alpha-ReQ Fig. 2), chosen Hessian spectra (Ghosh et al.
# 2023, Fig. 7) and correlations with a chosen spectrum (Ghosh et al. 2024, App. B)
# --------------------------------------------------------------------------


@pytest.fixture
def x64():
    with jax.enable_x64(True):  # restored on exit
        yield


def test_power_law_regression_statistics_and_normalisation():
    task = synthetic.power_law_regression(jax.random.PRNGKey(1), alpha=1.5, num_train=8,
                                        num_test=32, dim=16, noise_stds=(0.0, 0.5))
    chex.assert_shape([task["x_train"], task["y_train"], task["x_test"], task["y_test"]],
                      [(8, 16), (8, 2), (32, 16), (32, 2)])
    lam = np.asarray(task["eigenvalues"], np.float64)
    np.testing.assert_allclose(lam.sum(), 1.0, rtol=1e-5)          # 'trace': tr Sigma = 1
    np.testing.assert_allclose(lam / lam[0], np.arange(1, 17.) ** -1.5, rtol=1e-5)
    # Noise-free column is exactly the teacher; the other adds 0.5 * the same draw.
    x, th = np.asarray(task["x_train"]), np.asarray(task["theta"])
    np.testing.assert_allclose(task["y_train"][:, 0], x @ th, rtol=1e-4, atol=1e-5)
    noise = np.asarray(task["y_train"][:, 1]) - x @ th
    assert 0 < np.abs(noise).max() < 5 * 0.5
    assert synthetic.power_law_scale(16, 1.5, "top") == 1.0
    np.testing.assert_allclose(1 / synthetic.power_law_scale(16, 1.5), np.sum(np.arange(1, 17.) ** -1.5))


@pytest.mark.parametrize("planted", [0.5, 1.0, 2.0])
def test_power_law_regression_planted_alpha_recovered(planted):
    task = synthetic.power_law_regression(jax.random.PRNGKey(2), alpha=planted, num_train=4000,
                                        num_test=1, dim=256)
    fit = fit_alpha(task["x_train"])
    assert abs(float(fit.alpha) - planted) < 0.05, (planted, float(fit.alpha))
    assert float(fit.r2) > 0.95


@pytest.mark.parametrize("call, name", [
    (lambda: synthetic.power_law_regression(jax.random.PRNGKey(0), alpha=1.0, num_train=4,
                                          num_test=4, dim=8, normalization="max"),
     "normalization"),
    (lambda: synthetic.power_law_regression(jax.random.PRNGKey(0), alpha=1.0, num_train=4,
                                          num_test=4, dim=8, noise_stds=(-1.0,)),
     "noise_stds"),
    (lambda: synthetic.power_law_regression(jax.random.PRNGKey(0), alpha=-1.0, num_train=4,
                                          num_test=4, dim=8), "alpha"),
])
def test_power_law_regression_invalid_arguments(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_controlled_hessian_inputs_spectrum(x64):
    lam = jnp.array([4.0, 2.5, 1.0, 0.3, 0.01])
    out = synthetic.controlled_hessian_inputs(jax.random.PRNGKey(0), 12, lam)
    x = np.asarray(out["x"])
    np.testing.assert_allclose(np.linalg.eigvalsh(2 / 12 * x.T @ x)[::-1], lam, rtol=1e-10)
    loss = lambda w: jnp.mean((x @ w - 1.0) ** 2)
    np.testing.assert_allclose(jax.jit(lambda w: dense_hessian(loss, w))(jnp.zeros(5)),
                               out["hessian"], atol=1e-10)


def test_isotropic_noise_set_is_exactly_isotropic(x64):
    s = np.asarray(synthetic.isotropic_noise_set(jax.random.PRNGKey(3), 7, jnp.float64))
    assert s.shape == (14, 7)
    np.testing.assert_allclose(s.sum(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(s.T @ s / 14, np.eye(7) / 7, atol=1e-13)


def test_correlation_with_spectrum():
    lam = np.asarray((1.0, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0, -0.2, -0.4, -0.6),
                     np.float32)   # ssl_theory's spectrum: one signed, with a null direction
    t, v = map(np.asarray, synthetic.correlation_with_spectrum(lam, jax.random.PRNGKey(0)))
    np.testing.assert_allclose(v.T @ v, np.eye(len(lam)), atol=1e-5)
    np.testing.assert_allclose(t, t.T, atol=1e-6)
    np.testing.assert_allclose(t @ v, v * lam[None, :], atol=1e-5)
