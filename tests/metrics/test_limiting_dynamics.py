"""Limiting dynamics of SGD (Kunin et al. 2021): Lyapunov covariance vs scipy and a
simulated ensemble of the optax recursion, MSD vs the ensemble, noise covariance vs
enumeration of every batch, exponent fit vs numpy."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

from neurojax.metrics import limiting_dynamics as ld
from neurojax.optim.injection import inject_gradient_noise
from tests._x64 import float64


def _spd(seed, d, lo=0.5, hi=3.0):
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    return (q * np.linspace(lo, hi, d)) @ q.T


def _cov(seed, d):
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((d, d))
    return m @ m.T / d + 0.1 * np.eye(d)


@pytest.mark.parametrize("momentum,wd", [(0.0, 0.0), (0.0, 0.3), (0.7, 0.1)])
def test_stationary_covariance_matches_scipy(momentum, wd):
    with float64():
        d, lr = 4, 0.1
        h, c = _spd(0, d), _cov(1, d)
        got = ld.stationary_covariance(h, c, lr, momentum=momentum, weight_decay=wd,
                                       full_state=True)
        # the recursion written out by hand, solved by scipy
        hp = h + wd * np.eye(d)
        if momentum == 0:
            a, b = np.eye(d) - lr * hp, -lr * np.eye(d)
        else:
            a = np.block([[np.eye(d) - lr * hp, -lr * momentum * np.eye(d)],
                          [hp, momentum * np.eye(d)]])
            b = np.vstack([-lr * np.eye(d), np.eye(d)])
        want = scipy.linalg.solve_discrete_lyapunov(a, b @ c @ b.T)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-14)
        if momentum == 0:  # the brief's form: Sigma = (I - lr H) Sigma (I - lr H)^T + lr^2 C
            s = np.asarray(got)
            np.testing.assert_allclose(a @ s @ a.T + lr ** 2 * c, s, rtol=1e-10)


def _simulate(h, lr, sigma, momentum, wd, replicas, burn, steps, seed):
    """The optax chain itself on 0.5 theta^T H theta, many replicas (float64)."""
    d = h.shape[0]
    hj = jnp.asarray(h)
    opt = optax.chain(inject_gradient_noise(sigma, seed=seed), optax.add_decayed_weights(wd),
                      optax.sgd(lr, momentum=momentum or None))

    def run(key):
        theta = jax.random.normal(key, (d,), jnp.float64)
        state = opt.init(theta)
        state = (state[0]._replace(rng_key=key),) + tuple(state[1:])

        def step(carry, _):
            p, st = carry
            u, st = opt.update(hj @ p, st, p)
            p = optax.apply_updates(p, u)
            return (p, st), p

        carry, _ = jax.lax.scan(step, (theta, state), None, length=burn)
        _, traj = jax.lax.scan(step, carry, None, length=steps)
        return traj

    keys = jax.random.split(jax.random.PRNGKey(seed), replicas)
    return np.asarray(jax.jit(jax.vmap(run))(keys))  # (R, T, d)


@pytest.fixture(scope="module")
def ensemble():
    with float64():
        h = np.diag([0.2, 1.0, 4.0])
        lr, sigma, beta, wd = 0.2, 0.5, 0.5, 0.05
        traj = _simulate(h, lr, sigma, beta, wd, replicas=256, burn=200, steps=300, seed=3)
        return dict(h=h, lr=lr, sigma=sigma, beta=beta, wd=wd, traj=traj)


def test_stationary_covariance_matches_simulated_optax_sgd(ensemble):
    """Brute force: optax.chain(inject_gradient_noise, add_decayed_weights, sgd with
    momentum) simulated; its stationary covariance vs the Lyapunov solution with
    C = sigma^2 / d I."""
    e = ensemble
    d = e["h"].shape[0]
    with float64():
        pred = np.asarray(ld.stationary_covariance(
            e["h"], e["sigma"] ** 2 / d * np.eye(d), e["lr"], momentum=e["beta"],
            weight_decay=e["wd"]))
    x = e["traj"].reshape(-1, d)
    emp = x.T @ x / len(x)  # mean 0: the minimum of the decayed quadratic is 0
    np.testing.assert_allclose(np.diag(emp), np.diag(pred), rtol=0.08)
    assert np.abs(emp - pred).max() < 0.08 * np.abs(pred).max()


def test_msd_matches_simulated_ensemble(ensemble):
    e = ensemble
    d = e["h"].shape[0]
    lags = np.array([1, 3, 10, 30, 100])
    with float64():
        pred = np.asarray(ld.stationary_msd(e["h"], e["sigma"] ** 2 / d * np.eye(d), e["lr"],
                                            lags, momentum=e["beta"], weight_decay=e["wd"]))
        emp = np.asarray(ld.mean_squared_displacement(e["traj"], lags))
    np.testing.assert_allclose(emp, pred, rtol=0.08)
    assert np.all(np.diff(pred) > 0)


def test_msd_formula_plain_sgd_against_dense_powers():
    with float64():
        d, lr = 3, 0.05
        h, c = _spd(4, d), _cov(5, d)
        lags = np.array([0, 1, 2, 7, 50, 1000])
        got = np.asarray(ld.stationary_msd(h, c, lr, lags))
        s = scipy.linalg.solve_discrete_lyapunov(np.eye(d) - lr * h, lr ** 2 * c)
        want = [2 * np.trace((np.eye(d) - np.linalg.matrix_power(np.eye(d) - lr * h, k)) @ s)
                for k in lags]
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)


def test_sgd_noise_covariance_matches_enumeration_of_batches():
    rng = np.random.default_rng(0)
    n, d, s = 5, 2, 2
    g = rng.standard_normal((n, d))
    gbar = g.mean(0)
    with float64():
        for replacement, batches in ((True, itertools.product(range(n), repeat=s)),
                                     (False, itertools.combinations(range(n), s))):
            dev = np.array([g[list(b)].mean(0) - gbar for b in batches])
            want = dev.T @ dev / len(dev)
            got = ld.sgd_noise_covariance(g, s, replacement=replacement)
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-15)


def test_fit_diffusion_exponent_against_polyfit_and_power_law():
    k = np.arange(1, 200)
    fit = ld.fit_diffusion_exponent(k, 3.0 * k ** 0.37)
    np.testing.assert_allclose([float(fit.exponent), float(fit.prefactor)], [0.37, 3.0],
                               rtol=1e-5)
    msd = np.exp(np.random.default_rng(1).standard_normal(199)) * k ** 0.6
    fit = ld.fit_diffusion_exponent(k, msd, window=(10, 100))
    sel = (k >= 10) & (k <= 100)
    slope, icpt = np.polyfit(np.log(k[sel]), np.log(msd[sel]), 1)
    np.testing.assert_allclose(float(fit.exponent), slope, rtol=1e-4)
    assert int(fit.num_points) == sel.sum()
    jitted = jax.jit(lambda m: ld.fit_diffusion_exponent(k, m).exponent)(jnp.asarray(msd))
    np.testing.assert_allclose(float(jitted), np.polyfit(np.log(k), np.log(msd), 1)[0],
                               rtol=1e-4)


def test_lyapunov_solve_jits_and_bad_inputs_raise():
    a, q = 0.5 * np.eye(2), np.eye(2)
    np.testing.assert_allclose(np.asarray(jax.jit(ld.lyapunov_solve)(a, q)),
                               np.eye(2) / 0.75, rtol=1e-5)
    with pytest.raises(ValueError, match="spectral radius"):
        ld.lyapunov_solve(1.1 * np.eye(2), q)
    with pytest.raises(ValueError, match="spectral radius"):
        ld.stationary_covariance(np.diag([1.0, 0.0]), q, 0.1)  # flat direction
    with pytest.raises(ValueError, match="lr"):
        ld.stationary_covariance(np.eye(2), q, -0.1)
    with pytest.raises(ValueError, match="momentum"):
        ld.stationary_covariance(np.eye(2), q, 0.1, momentum=1.0)
    with pytest.raises(ValueError, match="noise_cov"):
        ld.stationary_covariance(np.eye(2), np.eye(3), 0.1)
    with pytest.raises(ValueError, match="hessian"):
        ld.sgd_transition(np.ones(3), 0.1)
    with pytest.raises(ValueError, match="lags"):
        ld.stationary_msd(np.eye(2), q, 0.1, np.array([1.5]))
    with pytest.raises(ValueError, match="batch_size"):
        ld.sgd_noise_covariance(np.ones((3, 2)), 4, replacement=False)
    with pytest.raises(ValueError, match="window"):
        ld.fit_diffusion_exponent(np.arange(1, 5), np.ones(4), window=(3, 3.5))
