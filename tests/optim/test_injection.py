"""Bias and noise injection (Ghosh et al. 2023, Eq. 1) as optax transforms.

Every check goes through ``optax.chain(transform, optax.sgd(lr))`` and reads the
applied direction ``d = update / lr`` with NumPy on the flattened PyTree: it
must equal ``-g + b * beta + noise`` (the paper's sign), with ``beta`` and the
noise's norm and key derivation computed independently in the test.
"""
import math

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from neurojax.optim import (GRADIENT_TRANSFORMS, gradient_bias_direction, inject_gradient_bias,
                            inject_gradient_noise, make_optimizer, noise_variance_factor,
                            random_unit_vector, zero_sum_noise_set, zero_sum_second_moment)

# nested PyTree with a scalar leaf; N = 6 + 4 + 1 + 3 = 14
PARAMS = {"dense": {"w": jnp.arange(6.0).reshape(3, 2), "b": jnp.zeros(4)},
          "scale": jnp.array(1.5), "extra": [jnp.ones(3)]}
GRADS = {"dense": {"w": jnp.array([[0.3, -0.2], [0.1, 0.9], [-1.0, 0.4]]),
                   "b": jnp.array([0.5, -0.5, 0.25, 2.0])},
         "scale": jnp.array(-0.7), "extra": [jnp.array([0.05, 0.0, -0.3])]}
N = 14
LR = 0.1


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def _rows(stacked):
    """(R, N) NumPy matrix of a PyTree whose leaves have a leading axis R."""
    leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(stacked)]
    return np.concatenate([x.reshape(x.shape[0], -1) for x in leaves], axis=1)


def _applied_direction(tx, grads=GRADS, params=PARAMS, steps=1, jit=True, optimizer=None):
    """The update directions d_t with update_t = lr * d_t, for `steps` updates of
    ``optax.chain(tx, optax.sgd(lr))`` (or of ``optimizer`` when given)."""
    chain = optimizer or optax.chain(tx, optax.sgd(LR))
    state = chain.init(params)
    update = jax.jit(chain.update) if jit else chain.update
    out = []
    for _ in range(steps):
        u, state = update(grads, state, params)
        out.append(_flat(u) / LR)
    return np.stack(out)


# ----------------------------------------------------------------------------- bias


def test_bias_direction_default_is_ones_and_custom_is_rescaled_to_sqrt_n():
    beta = gradient_bias_direction(PARAMS)
    np.testing.assert_array_equal(_flat(beta), np.ones(N))
    direction = jax.tree.map(lambda g: 3.0 * g, GRADS)
    beta = gradient_bias_direction(PARAMS, direction)
    chex.assert_trees_all_equal_structs(beta, PARAMS)
    expected = _flat(GRADS) * math.sqrt(N) / np.linalg.norm(_flat(GRADS))
    np.testing.assert_allclose(_flat(beta), expected, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(_flat(beta)), math.sqrt(N), rtol=1e-6)


@pytest.mark.parametrize("relative, jit", [(False, False), (True, True)])
def test_bias_update_is_minus_grad_plus_b_beta(relative, jit):
    b = 0.37
    d = _applied_direction(inject_gradient_bias(b, relative=relative), jit=jit)[0]
    g = _flat(GRADS)
    scale = b * np.linalg.norm(g) if relative else b
    np.testing.assert_allclose(d, -g + scale * np.ones(N), rtol=1e-5, atol=1e-6)


def test_bias_with_a_direction_tree():
    direction = jax.tree.map(lambda p: -jnp.arange(p.size, dtype=jnp.float32).reshape(p.shape)
                             - 1.0, PARAMS)
    d = _applied_direction(inject_gradient_bias(0.2, direction))[0]
    beta = _flat(direction) * math.sqrt(N) / np.linalg.norm(_flat(direction))
    np.testing.assert_allclose(d, -_flat(GRADS) + 0.2 * beta, rtol=1e-5, atol=1e-6)


def test_bias_chains_with_adam_which_sees_the_corrupted_gradient():
    b = 0.05
    ours = optax.chain(inject_gradient_bias(b), optax.adam(1e-2))
    ref = optax.adam(1e-2)
    s1, s2 = ours.init(PARAMS), ref.init(PARAMS)
    corrupted = jax.tree.map(lambda g: g - b, GRADS)
    for _ in range(3):
        u1, s1 = ours.update(GRADS, s1, PARAMS)
        u2, s2 = ref.update(corrupted, s2, PARAMS)
        chex.assert_trees_all_close(u1, u2, atol=1e-7)


def test_bias_errors():
    with pytest.raises(ValueError, match="direction"):
        gradient_bias_direction(PARAMS, jax.tree.map(jnp.zeros_like, PARAMS))
    with pytest.raises(ValueError, match="direction"):
        inject_gradient_bias(0.1, {"w": jnp.ones(3)}).init(PARAMS)


# ----------------------------------------------------------------------------- noise


@pytest.mark.parametrize("scaling, exponent, f, relative", [
    ("constant", None, 1.0, False), ("constant", None, 1.0, True), ("N", None, float(N), False),
    ("power", 0.5, N ** 0.5, True)])
def test_noise_is_sigma_sqrt_f_times_the_documented_unit_vector(scaling, exponent, f, relative):
    sigma, seed = 0.3, 11
    tx = inject_gradient_noise(sigma, seed=seed, scaling=scaling, exponent=exponent,
                               relative=relative)
    d = _applied_direction(tx, steps=2)
    g = _flat(GRADS)
    noise = d + g  # update direction = -g + noise
    norm = sigma * math.sqrt(f) * (np.linalg.norm(g) if relative else 1.0)
    np.testing.assert_allclose(np.linalg.norm(noise, axis=1), norm, rtol=1e-5)
    # key derivation documented in inject_gradient_noise: rng, k = split(rng)
    rng = jax.random.PRNGKey(seed)
    for t in range(2):
        rng, k = jax.random.split(rng)
        n_hat = _flat(random_unit_vector(k, GRADS))
        np.testing.assert_allclose(noise[t], norm * n_hat, rtol=1e-4, atol=1e-6)
    assert not np.allclose(noise[0], noise[1])
    # the public f(N) is the one the transform applies
    assert noise_variance_factor(N, scaling, exponent) == pytest.approx(f, rel=1e-12)


@pytest.mark.parametrize("call, field", [
    (lambda: noise_variance_factor(0), "num_params"),
    (lambda: noise_variance_factor(5, "linear"), "scaling"),
    (lambda: noise_variance_factor(5, "power"), "exponent"),
    (lambda: noise_variance_factor(5, "power", float("nan")), "exponent"),
    (lambda: noise_variance_factor(5, "N", 0.5), "exponent"),
    (lambda: zero_sum_second_moment(1), "num_vectors"),
    (lambda: zero_sum_second_moment(3, "unit"), "normalization"),
])
def test_noise_scaling_helpers_name_bad_arguments(call, field):
    with pytest.raises(ValueError, match=field):
        call()


def test_noise_entries_are_zero_mean_isotropic_over_steps():
    """E[n_hat] = 0 and E[n_hat n_hat^T] = I / N, from 4000 jitted steps (scan)."""
    params = {"a": jnp.zeros((2, 2)), "b": jnp.zeros(3)}  # N = 7
    n, steps = 7, 4000
    tx = inject_gradient_noise(1.0, key=jax.random.key(3))
    zeros = jax.tree.map(jnp.zeros_like, params)

    def body(state, _):
        u, state = tx.update(zeros, state, params)
        return state, jnp.concatenate([-x.ravel() for x in jax.tree.leaves(u)])

    _, samples = jax.jit(lambda s: jax.lax.scan(body, s, None, length=steps))(tx.init(params))
    samples = np.asarray(samples, np.float64)
    np.testing.assert_allclose(np.linalg.norm(samples, axis=1), 1.0, rtol=1e-5)
    # each entry has variance 1/N; the sample mean's std is sqrt(1/(N steps))
    se = math.sqrt(1.0 / (n * steps))
    assert np.max(np.abs(samples.mean(0))) < 5 * se
    cov = samples.T @ samples / steps
    # entries of n_hat n_hat^T have std <= 1/N; the average's std <= 1/(N sqrt(steps))
    np.testing.assert_allclose(cov, np.eye(n) / n, atol=6 / (n * math.sqrt(steps)))


def test_noise_chains_with_adam_which_sees_the_corrupted_gradient():
    tx = inject_gradient_noise(0.5, seed=2)
    ours = optax.chain(tx, optax.adam(1e-2))
    ref = optax.adam(1e-2)
    s1, s2, s_tx = ours.init(PARAMS), ref.init(PARAMS), tx.init(PARAMS)
    for _ in range(2):
        u1, s1 = ours.update(GRADS, s1, PARAMS)
        corrupted, s_tx = tx.update(GRADS, s_tx, PARAMS)
        u2, s2 = ref.update(corrupted, s2, PARAMS)
        chex.assert_trees_all_close(u1, u2, atol=1e-7)


def test_bias_and_noise_together_in_one_chain():
    b, sigma, seed = 0.1, 0.2, 5
    tx = optax.chain(inject_gradient_bias(b), inject_gradient_noise(sigma, seed=seed))
    d = _applied_direction(tx)[0]
    _, k = jax.random.split(jax.random.PRNGKey(seed))
    noise = sigma * _flat(random_unit_vector(k, GRADS))
    np.testing.assert_allclose(d, -_flat(GRADS) + b + noise, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- zero-sum sets


@pytest.mark.parametrize("r", [2, 5])
def test_zero_sum_noise_set(r):
    key = jax.random.PRNGKey(0)
    s = zero_sum_noise_set(key, PARAMS, r)
    chex.assert_tree_shape_prefix(s, (r,))
    flat = _rows(s)
    np.testing.assert_allclose(flat.sum(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(flat[:-1], axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(flat[-1], -flat[:-1].sum(0), rtol=1e-6)
    if r > 2:  # the random vectors differ from one another
        assert abs(flat[0] @ flat[1]) < 0.99


def test_zero_sum_mean_square_normalisation():
    """'mean_square': E[(1/R) sum ||n_i||^2] = 1 (paper's: 2 (R-1) / R)."""
    r, sets = 4, 2000
    like = {"a": jnp.zeros(5)}
    keys = jax.random.split(jax.random.PRNGKey(1), sets)
    for normalization, expected in (("paper", 2 * (r - 1) / r), ("mean_square", 1.0)):
        s = jax.vmap(lambda k: zero_sum_noise_set(k, like, r, normalization=normalization))(keys)
        msq = np.asarray(jnp.mean(jnp.sum(s["a"] ** 2, -1), -1))  # per-set mean sq. norm
        np.testing.assert_allclose(msq.mean(), expected, atol=5 * msq.std() / math.sqrt(sets))
        # the closed form the analyses use, against the same Monte Carlo
        np.testing.assert_allclose(zero_sum_second_moment(r, normalization), msq.mean(),
                                   atol=5 * msq.std() / math.sqrt(sets))
        assert zero_sum_second_moment(r, normalization) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("normalization", ["paper", "mean_square"])
def test_zero_sum_cycles_match_the_helper_and_sum_to_zero(normalization):
    sigma, r, seed = 0.7, 3, 4
    tx = inject_gradient_noise(sigma, seed=seed, zero_sum_set=r,
                               zero_sum_normalization=normalization)
    noise = _applied_direction(tx, steps=2 * r) + _flat(GRADS)
    rng = jax.random.PRNGKey(seed)
    for c in range(2):
        cycle = noise[c * r:(c + 1) * r]
        np.testing.assert_allclose(cycle.sum(0), 0.0, atol=1e-5)
        rng, cycle_key = jax.random.split(rng)  # documented: split at the cycle's first step
        s = zero_sum_noise_set(cycle_key, GRADS, r, normalization=normalization)
        expected = sigma * _rows(s)
        np.testing.assert_allclose(cycle, expected, rtol=1e-4, atol=1e-6)
    assert not np.allclose(noise[0], noise[r])  # a new set each cycle


def test_zero_sum_relative_directions_sum_to_zero():
    r = 3
    tx = inject_gradient_noise(0.5, seed=0, zero_sum_set=r, relative=True)
    chain = optax.chain(tx, optax.sgd(LR))
    state = chain.init(PARAMS)
    dirs = []
    for t in range(r):
        g = jax.tree.map(lambda x: (t + 1.0) * x, GRADS)  # changing gradient norm
        u, state = chain.update(g, state, PARAMS)
        noise = _flat(u) / LR + _flat(g)
        dirs.append(noise / (0.5 * np.linalg.norm(_flat(g))))
    np.testing.assert_allclose(np.sum(dirs, 0), 0.0, atol=1e-5)


# ----------------------------------------------------------------------------- dtypes, jit, vmap


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_dtypes_are_kept(dtype):
    params = jax.tree.map(lambda x: x.astype(dtype), PARAMS)
    grads = jax.tree.map(lambda x: x.astype(dtype), GRADS)
    tx = optax.chain(inject_gradient_bias(0.1, relative=True),
                     inject_gradient_noise(0.2, seed=0, zero_sum_set=2), optax.sgd(LR))
    state = tx.init(params)
    update = jax.jit(tx.update)
    g = _flat(grads)
    noises = []
    for _ in range(2):
        u, state = update(grads, state, params)
        chex.assert_trees_all_equal_dtypes(u, params)
        noises.append(_flat(u) / LR + g - 0.1 * np.linalg.norm(g))
    # bf16 rounds each entry of the update to ~3 significant digits
    rtol = 0.25 if dtype == jnp.bfloat16 else 1e-4
    np.testing.assert_allclose(np.linalg.norm(noises, axis=1), 0.2, rtol=rtol)
    np.testing.assert_allclose(noises[0] + noises[1], 0.0, atol=0.03 if rtol > 1e-3 else 1e-5)


def test_float64_and_typed_key():
    with jax.enable_x64(True):
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), PARAMS)
        grads = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), GRADS)
        tx = inject_gradient_noise(0.25, key=jax.random.key(9), scaling="N")
        u, _ = jax.jit(tx.update)(grads, tx.init(params), params)
        chex.assert_trees_all_equal_dtypes(u, params)
        np.testing.assert_allclose(np.linalg.norm(_flat(grads) - _flat(u)), 0.25 * math.sqrt(N),
                                   rtol=1e-12)


def test_vmap_over_a_traced_sigma_and_b():
    sigmas = jnp.array([0.0, 0.5, 2.0])

    def corrupt(s):
        tx = optax.chain(inject_gradient_bias(s), inject_gradient_noise(s, seed=0))
        return tx.update(GRADS, tx.init(PARAMS), PARAMS)[0]

    out = jax.vmap(corrupt)(sigmas)
    deltas = _flat(GRADS) - _rows(out)  # row i: s_i + s_i n_hat
    for s, delta in zip(np.asarray(sigmas), deltas):
        np.testing.assert_allclose(np.linalg.norm(delta - s), s, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- validation, factory


@pytest.mark.parametrize("make, field", [
    (lambda: inject_gradient_bias(-0.1), "b"),
    (lambda: inject_gradient_bias(float("nan")), "b"),
    (lambda: inject_gradient_noise(-1.0, seed=0), "sigma"),
    (lambda: inject_gradient_noise(float("inf"), seed=0), "sigma"),
    (lambda: inject_gradient_noise(0.1, seed=0, zero_sum_set=1), "zero_sum_set"),
    (lambda: inject_gradient_noise(0.1, seed=0, zero_sum_set=2.0), "zero_sum_set"),
    (lambda: inject_gradient_noise(0.1, seed=0, scaling="linear"), "scaling"),
    (lambda: inject_gradient_noise(0.1, seed=0, scaling="power"), "exponent"),
    (lambda: inject_gradient_noise(0.1, seed=0, exponent=0.5), "exponent"),
    (lambda: inject_gradient_noise(0.1), "key"),
    (lambda: inject_gradient_noise(0.1, key=jax.random.key(0), seed=0), "key"),
    (lambda: inject_gradient_noise(0.1, seed=0, zero_sum_normalization="x"),
     "zero_sum_normalization"),
    (lambda: zero_sum_noise_set(jax.random.key(0), PARAMS, 1), "num_vectors"),
])
def test_bad_arguments_are_named(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_factory_builds_the_injection_chain_from_a_config():
    assert {"inject_gradient_bias", "inject_gradient_noise"} <= set(GRADIENT_TRANSFORMS)
    cfg = ml_collections.ConfigDict(dict(name="sgd", lr=LR))
    cfg.transforms = (("inject_gradient_bias", {"b": 0.1, "relative": True}),
                      ("inject_gradient_noise", {"sigma": 0.2, "seed": 7, "zero_sum_set": 2}))
    tx = make_optimizer(cfg, total_steps=10)
    d = _applied_direction(None, steps=2, optimizer=tx)
    g = _flat(GRADS)
    noise = d + g - 0.1 * np.linalg.norm(g)
    np.testing.assert_allclose(np.linalg.norm(noise, axis=1), 0.2, rtol=1e-5)
    np.testing.assert_allclose(noise.sum(0), 0.0, atol=1e-6)  # R = 2: n, -n
    with pytest.raises(ValueError, match="sigma"):
        make_optimizer(dict(name="sgd", lr=LR, transforms=(
            ("inject_gradient_noise", {"sigma": -1.0, "seed": 0}),)), total_steps=10)


def test_noise_state_survives_a_donating_train_step():
    """The train step donates its state: the transform's state must hold
    distinct buffers, and init must work again after a donation."""
    from neurojax.train.state import create_train_state
    from neurojax.train.step import make_train_step
    tx = optax.chain(inject_gradient_noise(0.1, seed=0, zero_sum_set=3), optax.sgd(0.1))
    def objective(p, model_state, batch, rng):
        return jnp.sum((p["w"] * batch["x"]) ** 2), ({}, model_state)

    step = make_train_step(objective, tx, donate=True)
    batch = {"x": np.ones((2, 3), np.float32)}
    for _ in range(2):  # a second state from the same transform after donation
        state = create_train_state({"w": jnp.ones((3,))}, tx, rng=jax.random.PRNGKey(0))
        for _ in range(2):
            state, metrics = step(state, batch)
        assert np.isfinite(float(metrics["loss"]))
