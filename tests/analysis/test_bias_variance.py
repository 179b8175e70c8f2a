"""Ghosh et al. (ICLR 2023) predictions (neurojax.analysis.bias_variance) against
independent computations: losses evaluated after explicit updates, Hessians written
in closed form here ((2/n) X^T X) or taken by autodiff (dense_hessian), NumPy
eigendecompositions and matrix powers, and exactly isotropic noise sets."""
import math
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.analysis import bias_variance as bv
from neurojax.analysis import bias_variance_descent as bvd
from neurojax.data import synthetic
from neurojax.metrics import imperfect_gradients as ig
from neurojax.optim.injection import zero_sum_noise_set
from tests._quadratic import as_tree, flat, grad_flat, isotropic_set, quadratic_problem


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):  # restored on exit
        yield


def test_lemma21_trace_form_exact_with_isotropic_set():
    loss, params, h, _, _ = quadratic_problem(1, [5.0, 2.0, 1.0, 0.7, 0.1, 0.01, 2.5, 0.3])
    g = grad_flat(loss, params)
    n = g.size
    beta = np.random.default_rng(5).standard_normal(n)  # any direction, rescaled to sqrt(N)
    b, sigma, dt, f_n = 0.21, 0.8, 0.03, 3.0
    beta_tree = jax.tree.map(lambda t: t[0], as_tree(beta[None], params))
    meas = ig.measure_excess_loss(loss, params, dt, b=b, beta=beta_tree, sigma=sigma, f_n=f_n,
                                  noise_set=as_tree(isotropic_set(2, n), params))
    pred = ig.lemma21_excess_loss(g, dt, hessian=h, b=b, beta=beta, sigma=sigma, f_n=f_n)
    # independent: the terms of Eq. 3 written out here with beta normalised to sqrt(N)
    bt = beta * math.sqrt(n) / np.linalg.norm(beta)
    ref = (b * g @ bt * dt + 0.5 * b ** 2 * bt @ h @ bt * dt ** 2
           - 0.5 * b * g @ (h + h.T) @ bt * dt ** 2 + 0.5 * sigma ** 2 * f_n * np.trace(h) / n * dt ** 2)
    np.testing.assert_allclose(pred["total"], ref, rtol=1e-12)
    np.testing.assert_allclose(meas["delta_loss"], ref, rtol=1e-8)
    # the trace form with a zero-sum set holds only in expectation: a paper-normalised
    # set is 2(R-1)/R too large on average (Monte Carlo over many sets)
    quads = jax.jit(jax.vmap(lambda k: ig.noise_set_quadratic(
        h, jax.vmap(flat)(zero_sum_noise_set(k, params, 5)))))(
        jax.random.split(jax.random.PRNGKey(0), 4000))
    expect = bv.zero_sum_second_moment(5, "paper") * np.trace(h) / n
    np.testing.assert_allclose(np.mean(quads), expect, rtol=0.03)
    assert abs(np.mean(quads) - np.trace(h) / n) > 0.3 * np.trace(h) / n


def test_measure_through_optax_matches_explicit():
    loss, params, _, _, _ = quadratic_problem(2, [2.0, 1.0, 0.4, 0.1])
    key = jax.random.PRNGKey(11)
    via_optax = bv.measure_excess_loss_optax(loss, params, 0.07, b=0.3, sigma=0.9, key=key,
                                             num_vectors=6)
    nset = zero_sum_noise_set(jax.random.split(key)[1], params, 6)
    explicit = ig.measure_excess_loss(loss, params, 0.07, b=0.3, sigma=0.9, noise_set=nset)
    np.testing.assert_allclose(via_optax["per_vector"], explicit["per_vector"], rtol=1e-10)
    np.testing.assert_allclose(via_optax["delta_loss"], explicit["delta_loss"], rtol=1e-10)


@pytest.mark.slow
def test_probability_of_descent_respects_thresholds():
    dt, key = 0.1, jax.random.PRNGKey(1)  # 2/dt = 20; with sigma = ||g||: 10
    kw = dict(num_teachers=3, num_students=40, num_examples=30)
    flat_low = jnp.linspace(2.0, 9.5, 6)      # lambda_1 < 10 < 20
    mid = jnp.linspace(10.5, 19.5, 6)         # 10 < lambda_N, lambda_1 < 20
    high = jnp.linspace(20.5, 30.0, 6)        # lambda_N > 20
    assert float(bvd.probability_of_descent(key, flat_low, dt, **kw)["p_descent"]) == 1.0
    assert float(bvd.probability_of_descent(key, flat_low, dt, noise_ratio=1.0, **kw)["p_descent"]) == 1.0
    assert float(bvd.probability_of_descent(key, mid, dt, **kw)["p_descent"]) == 1.0
    assert float(bvd.probability_of_descent(key, mid, dt, noise_ratio=1.0, **kw)["p_descent"]) == 0.0
    assert float(bvd.probability_of_descent(key, high, dt, **kw)["p_descent"]) == 0.0
    # bias: below the Theorem 3.2 bound always descends; much larger bias often does not
    lam = jnp.linspace(0.5, 3.0, 6)
    psi = float(jnp.linalg.norm(lam))
    bound = float(ig.bias_descent_bound(psi, 6, dt))
    p_small = bvd.probability_of_descent(key, lam, dt, bias_ratio=0.99 * bound, **kw)
    p_big = bvd.probability_of_descent(key, lam, dt, bias_ratio=3.0, **kw)
    assert float(p_small["p_descent"]) == 1.0 and float(p_big["p_descent"]) < 0.5
    # a single draw can ascend even where the expectation descends
    noisy = bvd.probability_of_descent(key, mid * 0.5, dt, noise_ratio=3.0, **kw)
    assert float(noisy["p_descent_draw"]) < 1.0


@pytest.mark.slow
def test_probability_of_descent_grid_vmapped_without_lapack():
    # Fig. 7 stalled forever inside this call: jaxlib 0.10.2's batched LAPACK QR
    # (vmapped over teachers, students and cells) deadlocks on CPU when two such
    # calls run at once (benchmarks/lapack_batch_hang.py). The compiled grid has no
    # custom calls now, and a tiny grid runs and respects Theorem 3.1.
    dt, d = 0.1, 4
    spectra = jnp.stack([jnp.linspace(1.0, 9.0, d), jnp.linspace(1.0, 30.0, d),
                         jnp.linspace(21.0, 30.0, d)])
    kw = dict(num_teachers=3, num_students=8, num_examples=12, num_vectors=2,
              noise_set="isotropic")
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    fn = jax.jit(jax.vmap(lambda k, s, r: bvd._descent_trials(k, s, dt, 0.0, r, **kw)))
    hlo = fn.lower(keys, spectra, jnp.zeros(3)).compile().as_text()
    assert "custom-call" not in hlo and "custom_call_target" not in hlo
    out = bvd.probability_of_descent_grid(jax.random.PRNGKey(0), spectra, dt, num_teachers=3,
                                         num_students=8, num_examples=12)
    p = np.asarray(out["p_descent"])
    assert p.shape == (3,) and p[0] == 1.0 and p[2] == 0.0  # lambda_1 < 2/dt < lambda_N


def test_invalid_arguments_name_the_argument():
    g, h = jnp.ones(3), jnp.eye(3)
    with pytest.raises(ValueError, match="dt"):
        ig.lemma21_excess_loss(g, 0.0, hessian=h)
    with pytest.raises(ValueError, match="sigma"):
        ig.lemma21_excess_loss(g, 0.1, hessian=h, sigma=-1.0)
    with pytest.raises(ValueError, match="hessian"):
        ig.lemma21_excess_loss(g, 0.1, hessian=jnp.eye(2))
    with pytest.raises(ValueError, match="hessian"):
        ig.lemma21_excess_loss(g, 0.1, b=0.1)
    with pytest.raises(ValueError, match="beta"):
        ig.bias_pq(g, h, 0.1, beta=jnp.ones(4))
    with pytest.raises(ValueError, match="form"):
        ig.bias_descent_bound(1.0, 3, 0.1, form="pac")
    with pytest.raises(ValueError, match="grad_norm"):
        ig.noise_threshold(0.0, 1.0, 0.1)
    with pytest.raises(ValueError, match="num_examples"):
        synthetic.controlled_hessian_inputs(jax.random.PRNGKey(0), 2, jnp.ones(3))
    with pytest.raises(ValueError, match="normalization"):
        bv.zero_sum_second_moment(4, "unit")
    with pytest.raises(ValueError, match="activation"):
        ig.hessian_trace_two_layer(np.ones((2, 2)), np.ones((2, 2)), np.ones(2), "tanh")
