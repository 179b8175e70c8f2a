"""The linear Barlow Twins gradient flow (Theorem B.4): autodiff, scipy's solve_ivp and
constructed weights as references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

from neurojax.losses.ssl import barlow_twins_linear
from neurojax.metrics import bt_flow as flow
from tests._x64 import float64 as x64


def bt_linear_loss(w, t, beta):
    return barlow_twins_linear(w, t, beta)[0]


def loss_here(w, t, beta):
    c = w @ t @ w.T
    off = c - jnp.diag(jnp.diag(c))
    return jnp.sum((jnp.diag(c) - 1) ** 2) + beta * jnp.sum(off ** 2)


grad_here = jax.jit(jax.grad(loss_here))


def random_flow_problem(seed, m=4, n=6):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, n))
    return rng.normal(size=(m, n)) * 0.5, (a + a.T) / 4


@pytest.fixture(scope="module")
def flows():
    """Eq. 34 from one small initialisation, beta in {0, 0.01, 0.1, 1}, t in [0, 40]."""
    with x64():
        lam = np.array([1.0, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.2, -0.5])
        v = np.linalg.qr(np.random.default_rng(18).normal(size=(10, 10)))[0]
        t = (v * lam) @ v.T
        w0 = 1e-4 * np.random.default_rng(16).normal(size=(4, 10)) / np.sqrt(10)
        out = {beta: np.asarray(flow.integrate_bt_flow(w0, t, beta, dt=0.02, num_records=20,
                                                     steps_per_record=100))
               for beta in (0.0, 0.01, 0.1, 1.0)}
        return lam, t, v, w0, out


def test_eq34_is_negative_gradient_of_bt_loss():
    with x64():
        w, t = random_flow_problem(10)
        for beta in (0.0, 0.3, 1.0):
            loss_loop = sum(((w[i] @ t @ w[i]) - 1) ** 2 for i in range(4)) + beta * sum(
                (w[i] @ t @ w[j]) ** 2 for i in range(4) for j in range(4) if i != j)
            np.testing.assert_allclose(float(bt_linear_loss(w, t, beta)), loss_loop,
                                       rtol=1e-12)
            grad = grad_here(jnp.asarray(w), jnp.asarray(t), beta)
            np.testing.assert_allclose(flow.bt_flow_rhs(w, t, beta, eta=0.7), -0.7 * grad,
                                       rtol=1e-11, atol=1e-12)


def test_eq36_eigenbasis_form():
    with x64():
        w, t = random_flow_problem(11)
        lam, v = np.linalg.eigh(t)
        rhs = np.asarray(flow.bt_flow_rhs(w, t, 0.0, eta=0.5)) @ v
        np.testing.assert_allclose(flow.bt_flow_rhs_eigenbasis(w @ v, lam, eta=0.5), rhs,
                                   rtol=1e-11, atol=1e-12)


def test_flow_validates_inputs():
    w, t = random_flow_problem(12)
    with pytest.raises(ValueError, match="symmetric"):
        flow.bt_flow_rhs(w, t + np.triu(np.ones_like(t)), 0.1)
    with pytest.raises(ValueError, match="beta"):
        flow.bt_flow_rhs(w, t, 1.5)   # the flow's (1 - beta) weighting needs beta <= 1
    with pytest.raises(ValueError, match="beta"):
        bt_linear_loss(w, t, -1.0)
    with pytest.raises(ValueError, match="t must be"):
        flow.bt_flow_rhs(w, t[:3, :3], 0.1)
    with pytest.raises(ValueError, match="dt"):
        flow.integrate_bt_flow(w, t, 0.1, dt=-0.1)
    with pytest.raises(ValueError, match="num_records"):
        flow.integrate_bt_flow(w, t, 0.1, num_records=0)


def test_rk4_matches_scipy_solve_ivp():
    with x64():
        w, t = random_flow_problem(13, m=3, n=5)
        w = 0.3 * w
        beta = 0.2
        traj = np.asarray(flow.integrate_bt_flow(w, t, beta, dt=0.005, num_records=4,
                                               steps_per_record=100))
        rhs = lambda _, y: np.asarray(flow._bt_rhs(y.reshape(w.shape), t, beta, 1.0)).ravel()  # noqa
        sol = scipy.integrate.solve_ivp(rhs, (0, 2.0), w.ravel(), t_eval=[0.5, 1.0, 1.5, 2.0],
                                        method="DOP853", rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(traj[1:], sol.y.T.reshape(4, *w.shape), atol=1e-8)
        # Gradient flow: the loss never increases along the trajectory.
        losses = [float(loss_here(x, t, beta)) for x in traj]
        assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:]))


def test_augmentation_correlation():
    rng = np.random.default_rng(14)
    x, xp = rng.normal(size=(5, 40)), rng.normal(size=(5, 40))
    t = np.asarray(flow.augmentation_correlation(x, xp))
    want = np.zeros((5, 5))
    for b in range(40):
        want += (np.outer(x[:, b], xp[:, b]) + np.outer(xp[:, b], x[:, b])) / 80
    np.testing.assert_allclose(t, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="x_prime"):
        flow.augmentation_correlation(x, xp[:, :3])


def test_dynamics_metrics_on_constructed_weights():
    lam = np.array([1.0, 0.5, 0.25, 0.1, -0.3])
    v = np.linalg.qr(np.random.default_rng(15).normal(size=(5, 5)))[0]
    collapsed = np.outer([1.0, -1.0, 1.0], v[:, 0])          # every row along v_1
    m = flow.dynamics_metrics(collapsed, v, lam)
    assert float(m["top1_alignment"]) == pytest.approx(1.0, abs=1e-5)
    assert float(m["effective_rank_c"]) == pytest.approx(1.0, abs=1e-3)
    assert float(m["top_d_balance"]) == pytest.approx(0.0, abs=1e-6)
    spanning = (v[:, :3] / np.sqrt(lam[:3])).T                # W T W^T = I on the top 3
    m = flow.dynamics_metrics(spanning, v, lam)
    np.testing.assert_allclose(m["share"][:3], 1 / 3, rtol=1e-4)
    assert float(m["effective_rank_c"]) == pytest.approx(3.0, rel=1e-4)
    assert float(m["top_d_balance"]) == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError, match="top_d"):
        flow.dynamics_metrics(spanning, v, lam, top_d=9)


def test_beta0_small_init_collapses_onto_top_eigenvector(flows):
    lam, t, v, w0, out = flows
    traj = out[0.0]
    metrics = flow.dynamics_metrics(traj[-1], v, lam)
    assert float(metrics["top1_alignment"]) > 0.99
    assert float(metrics["effective_rank_c"]) < 1.05
    assert float(metrics["effective_rank_w"]) < 1.5
    assert float(loss_here(traj[-1], t, 0.0)) < 1e-8      # every C_pp = 1: a minimum
    # Eq. 36-37 exactly for beta = 0: log(z_pi(t)/z_pi(0)) / lambda_i is the same for all i,
    # so lambda_i < 0 components shrink, lambda_i = 0 ones stay, positive ones grow.
    z0, z = w0 @ v, traj[5] @ v
    ratio = np.log(np.abs(z / z0))
    nonzero = np.abs(lam) > 0
    per_row = ratio[:, nonzero] / lam[None, nonzero]
    np.testing.assert_allclose(per_row, per_row[:, :1] * np.ones_like(per_row), rtol=1e-6)
    np.testing.assert_allclose(ratio[:, lam == 0], 0, atol=1e-9)
    assert np.all(ratio[:, lam < 0] < 0) and np.all(ratio[:, lam > 0] > 0)


def test_larger_beta_spans_top_d_eigenvectors(flows):
    lam, t, v, _, out = flows
    final = {beta: flow.dynamics_metrics(traj[-1], v, lam) for beta, traj in out.items()}
    for beta in (0.1, 1.0):
        m = final[beta]
        assert float(m["effective_rank_c"]) > 3.95
        assert float(m["top_d_balance"]) > 0.9            # each top-4 eigenvector ~1/4 of tr C
        assert float(m["top_d_share"]) > 0.98
        assert float(m["top1_alignment"]) < 0.3
        assert float(loss_here(out[beta][-1], t, beta)) < 1e-3
    ranks = [float(final[b]["effective_rank_c"]) for b in (0.0, 0.01, 0.1)]
    assert ranks[0] < ranks[1] < ranks[2]                 # at a fixed horizon, rank grows with beta
