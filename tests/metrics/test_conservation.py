"""Symmetries and conservation laws (Kunin et al. 2021, Neural mechanics;
Tanaka & Kunin 2021, Noether's learning dynamics).

The constraints <g, psi(theta)> = 0 are checked on autodiff gradients of a
toy BN network and of the library's SmallCNN/MLP; the discrete laws against
trajectories simulated step by step with optax, the charges measured there
with NumPy; the modified equation's closed form against scipy's ODE solver;
the RMSProp metric law against optax.rmsprop's own preconditioner.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.integrate import solve_ivp

from neurojax.metrics.conservation import (Member, Symmetry, charge, conservation_record,
                                           equilibrium_charge, generator_inner,
                                           heavy_ball_charge, heavy_ball_modified_charge,
                                           kinetic_breaking, preconditioned_charge,
                                           rescale_symmetry, rmsprop_charge_step,
                                           scale_symmetry, sequential_symmetries, sgd_charge,
                                           translation_symmetries)
from neurojax.models import SmallCNN
from neurojax.optim import gradient_rms_metrics, record_metrics
from neurojax.train.state import create_train_state
from neurojax.train.step import train_step_fn
from tests._x64 import float64

D, C, K, N = 5, 4, 3, 16


def _toy_params(key):
    k = jax.random.split(key, 4)
    return {"lin": {"kernel": jax.random.normal(k[0], (D, C)), "bias": 0.3 * jnp.ones(C)},
            "bn": {"scale": 1.0 + 0.1 * jax.random.normal(k[1], (C,)), "bias": 0.1 * jnp.ones(C)},
            "head": {"kernel": jax.random.normal(k[2], (C, K)),
                     "bias": 0.1 * jax.random.normal(k[3], (K,))}}


def _toy_loss(p, x, y):
    """linear -> batch norm without eps (exactly scale invariant) -> ReLU ->
    softmax head, cross-entropy."""
    z = x @ p["lin"]["kernel"] + p["lin"]["bias"]
    z = (z - z.mean(0)) / jnp.sqrt(z.var(0))
    h = nn.relu(z * p["bn"]["scale"] + p["bn"]["bias"])
    logits = h @ p["head"]["kernel"] + p["head"]["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


_TOY_GRAD = jax.jit(jax.grad(_toy_loss))


def _toy_data(seed, n=N):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, D)), rng.integers(0, K, n)


def _toy_symmetries(p):
    return sequential_symmetries(p, ["lin", "head"], norms={"lin": "bn"}, head="head")


def _np_charges(p):
    """The charges by hand, in NumPy (independent of conservation.charge)."""
    p = jax.tree.map(np.asarray, p)
    return {"lin": (p["lin"]["kernel"] ** 2).sum(0) + p["lin"]["bias"] ** 2,
            "bn_to_head": p["bn"]["scale"] ** 2 + p["bn"]["bias"] ** 2
            - (p["head"]["kernel"] ** 2).sum(1),
            "head_rows": p["head"]["kernel"].sum(1), "head_bias": p["head"]["bias"].sum()[None]}


def test_symmetries_found_and_charges_equal_numpy():
    with float64():
        p = _toy_params(jax.random.PRNGKey(0))
        syms = _toy_symmetries(p)
        assert [(s.kind, s.name) for s in syms] == [
            ("scale", "lin"), ("rescale", "bn_to_head"), ("translation", "head_rows"),
            ("translation", "head_bias")]
        want = _np_charges(p)
        for s in syms:
            np.testing.assert_allclose(charge(p, s), want[s.name], rtol=1e-12)


def test_gradient_is_orthogonal_to_each_generator_and_one_step_laws_hold():
    """<g, theta> = 0 (scale), <g_in, theta_in> - <g_out, theta_out> = 0
    (rescale), sum over the logits' classes of g = 0 (translation), from
    autodiff; then one SGD + weight-decay step matches each law to float64."""
    with float64():
        p = _toy_params(jax.random.PRNGKey(1))
        x, y = _toy_data(1)
        g = _TOY_GRAD(p, x, y)
        syms = tuple(_toy_symmetries(p))
        inner, size = _inners(g, p, syms)
        for s, i, z in zip(syms, inner, size):
            assert np.all(np.abs(i) <= 1e-13 * z + 1e-16), (s.name, i, z)
        # the check can fail: a generic direction is not orthogonal
        inner, size = _inners(g, jax.tree.map(jnp.ones_like, p), syms[:1])
        assert np.min(np.abs(inner[0]) / size[0]) > 1e-3
        lr, wd = 0.3, 0.2
        new = jax.tree.map(lambda w, d: w - lr * (d + wd * w), p, g)
        before, after, gq = _np_charges(p), _np_charges(new), _np_charges(g)
        np.testing.assert_allclose(after["lin"], (1 - lr * wd) ** 2 * before["lin"]
                                   + lr ** 2 * gq["lin"], rtol=1e-12)
        np.testing.assert_allclose(after["bn_to_head"], (1 - lr * wd) ** 2 * before["bn_to_head"]
                                   + lr ** 2 * gq["bn_to_head"], rtol=1e-10, atol=1e-13)
        for name in ("head_rows", "head_bias"):
            np.testing.assert_allclose(after[name], (1 - lr * wd) * before[name], rtol=1e-12)


def test_library_model_symmetries_hold_under_autodiff():
    """SmallCNN with BatchNorm (conv -> conv rescale on the kernel's input
    axis; the flattened NHWC map before 'hidden': channel c owns rows c,
    C + c, ...): rescale and translation exact; scale up to BatchNorm's
    epsilon (relative ~eps / Var)."""
    with float64():
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(6, 8, 8, 1)), rng.integers(0, 3, 6)
        cnn = SmallCNN(widths=(2, 3), hidden=4, num_classes=3, batch_norm=True)
        shapes = jax.eval_shape(cnn.init, jax.random.PRNGKey(0), x[:1])  # no compile
        leaves, tree = jax.tree.flatten(shapes)
        v = jax.tree.unflatten(tree, [jnp.asarray(rng.normal(size=l.shape)) for l in leaves])

        def loss(params):
            out, _ = cnn.apply({"params": params, "batch_stats": v["batch_stats"]}, x,
                               train=True, mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
        p = v["params"]
        g = jax.jit(jax.grad(loss))(p)
        syms = tuple(sequential_symmetries(p, ["conv_0", "conv_1", "hidden", "head"],
                                           norms={"conv_0": "bn_0", "conv_1": "bn_1"}))
        assert [s.kind for s in syms] == ["scale"] * 2 + ["rescale"] * 3 + ["translation"] * 2
        assert [s for s in syms if s.name == "bn_1_to_hidden"][0].num_channels == 3
        inner, size = _inners(g, p, syms)
        for s, i, z in zip(syms, inner, size):
            bound = 1e-3 if s.kind == "scale" else 1e-12
            assert np.all(np.abs(i) <= bound * z + 1e-15), (s.name, i, z)
        # the bookkeeping matters: reading the flattened rows channel-slowest breaks rescale
        wrong = Symmetry("rescale", "w", (Member(("bn_1", "scale")), Member(("bn_1", "bias"))),
                         3, outgoing=(Member(("hidden", "kernel"), -2),))
        k = p["hidden"]["kernel"]
        p_wrong = {**p, "hidden": {**p["hidden"],
                                   "kernel": k.reshape(4, 3, -1).transpose(1, 0, 2).reshape(k.shape)}}
        g_wrong = {**g, "hidden": {**g["hidden"], "kernel": g["hidden"]["kernel"].reshape(
            4, 3, -1).transpose(1, 0, 2).reshape(k.shape)}}
        i_wrong, z_wrong = _inners(g_wrong, p_wrong, (wrong,))
        assert np.max(np.abs(i_wrong[0]) / z_wrong[0]) > 1e-6


@functools.partial(jax.jit, static_argnums=2)
def _inners(g, p, syms):
    """<g, psi(theta)> per symmetry and sum |g| |psi(theta)| (the size it cancels)."""
    absg, absp = jax.tree.map(jnp.abs, g), jax.tree.map(jnp.abs, p)
    sizes = []
    for s in syms:
        if s.kind == "translation":
            sizes.append(generator_inner(absg, absp, s))
        else:
            both = Symmetry("scale", "x", s.members + s.outgoing, s.num_channels)
            sizes.append(generator_inner(absg, absp, both))
    return [generator_inner(g, p, s) for s in syms], sizes


def _simulate(tx, steps=25, seed=0):
    """SGD-family trajectory on the toy, minibatches of 8: parameters at every
    step and the raw gradients."""
    p = _toy_params(jax.random.PRNGKey(seed))
    state = tx.init(p)
    grad = _TOY_GRAD
    params, grads = [p], []
    for t in range(steps):
        x, y = _toy_data(100 + t, 8)
        g = grad(p, x, y)
        u, state = tx.update(g, state, p)
        p = optax.apply_updates(p, u)
        params.append(p)
        grads.append(g)
    return params, grads


def _stack(trees, name):
    return np.stack([_np_charges(t)[name] for t in trees])


def test_sgd_law_with_weight_decay_matches_a_simulated_trajectory():
    with float64():
        lr, wd = 0.2, 0.05
        params, grads = _simulate(optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr)))
        syms = {s.name: s for s in _toy_symmetries(params[0])}
        for name, s in syms.items():
            q = _stack(params, name)
            pred = sgd_charge(q[0], _stack(grads, name), kind=s.kind, lr=lr, weight_decay=wd)
            np.testing.assert_allclose(pred, q, rtol=1e-10, atol=1e-12, err_msg=name)
        # wrong law (no eta^2 ||g||^2 term) is visibly off: the test can fail
        q = _stack(params, "lin")
        wrong = sgd_charge(q[0], 0 * _stack(grads, "lin"), kind="scale", lr=lr, weight_decay=wd)
        assert np.max(np.abs(wrong[-1] / q[-1] - 1)) > 1e-3


def test_heavy_ball_law_matches_a_simulated_momentum_trajectory():
    with float64():
        lr, wd, beta = 0.1, 0.1, 0.9
        params, _ = _simulate(optax.chain(optax.add_decayed_weights(wd),
                                          optax.sgd(lr, momentum=beta)), steps=30)
        steps = [jax.tree.map(lambda a, b: b - a, p0, p1) for p0, p1 in zip(params, params[1:])]
        for s in _toy_symmetries(params[0]):
            q = _stack(params, s.name)
            pred = heavy_ball_charge(q[0], _stack(steps, s.name), kind=s.kind, lr=lr,
                                     weight_decay=wd, momentum=beta)
            np.testing.assert_allclose(pred, q, rtol=1e-9, atol=1e-12, err_msg=s.name)
        # the SGD law does not describe the momentum run
        q = _stack(params, "head_rows")
        sgd = sgd_charge(q[0], np.zeros_like(q[1:]), kind="translation", lr=lr, weight_decay=wd)
        assert np.max(np.abs(sgd[-1] - q[-1])) > 1e-2 * np.max(np.abs(q[0]))


def test_modified_equation_closed_form_equals_an_ode_solve_and_approaches_the_recurrence():
    with float64():
        lr, wd, beta = 0.01, 0.5, 0.9
        k = np.arange(0, 1001, 50)
        for stiffness, wdx in ((2.0, wd), (1.0, 40.0)):  # under- and over-damped
            m, gamma, kappa = lr * (1 + beta) / 2, 1 - beta, stiffness * wdx
            sol = solve_ivp(lambda t, z: [z[1], -(gamma * z[1] + kappa * z[0]) / m],
                            (0, k[-1] * lr), [1.0, -kappa / (1 + beta)], t_eval=k * lr,
                            rtol=1e-10, atol=1e-12, method="DOP853")
            got = heavy_ball_modified_charge(1.0, k, lr=lr, weight_decay=wdx, momentum=beta,
                                             stiffness=stiffness)
            np.testing.assert_allclose(got, sol.y[0], atol=1e-8)
        # O(eta): halving eta (same time horizon) about halves the gap to the exact recurrence
        gaps = []
        for eta in (0.02, 0.01):
            steps = int(round(10 / eta))
            exact = heavy_ball_charge(1.0, np.zeros(steps), kind="translation", lr=eta,
                                      weight_decay=wd, momentum=beta)
            approx = heavy_ball_modified_charge(1.0, np.arange(steps + 1), lr=eta,
                                                weight_decay=wd, momentum=beta)
            gaps.append(float(np.max(np.abs(exact - approx))))
        assert gaps[1] < 1e-3 and 1.5 < gaps[0] / gaps[1] < 3.0, gaps


def test_rmsprop_breaks_the_euclidean_charge_and_keeps_the_metric_law():
    """RMSProp (optax: s = sqrt(nu + eps), nu updated with g first) on the
    scale-invariant set: Q_s(theta_{t+1}) = Q_s(theta_t) + eta^2 sum g^2 / s;
    the Euclidean law fails and kinetic_breaking is not zero (it is for SGD)."""
    with float64():
        lr, decay, eps = 0.05, 0.9, 1e-8
        tx = optax.rmsprop(lr, decay=decay, eps=eps)
        p = _toy_params(jax.random.PRNGKey(3))
        s_lin = scale_symmetry(p, "lin")
        state = tx.init(p)
        nu = jax.tree.map(jnp.zeros_like, p)
        breaking = []
        for t in range(10):
            x, y = _toy_data(200 + t, 8)
            g = _TOY_GRAD(p, x, y)
            nu = jax.tree.map(lambda n, gi: decay * n + (1 - decay) * gi ** 2, nu, g)
            precond = jax.tree.map(lambda n: jnp.sqrt(n + eps), nu)
            u, state = tx.update(g, state, p)
            new = optax.apply_updates(p, u)
            pred = rmsprop_charge_step(preconditioned_charge(p, precond, s_lin), g, precond,
                                       s_lin, lr=lr)
            np.testing.assert_allclose(preconditioned_charge(new, precond, s_lin), pred,
                                       rtol=1e-12)
            breaking.append(kinetic_breaking(generator_inner(u, p, s_lin)[None],
                                             charge(p, s_lin)[None], kind="scale", lr=lr))
            p = new
        assert np.max(np.abs(np.concatenate(breaking))) > 1e-4
        p = _toy_params(jax.random.PRNGKey(3))
        g = _TOY_GRAD(p, *_toy_data(0))
        u = jax.tree.map(lambda gi, w: -0.1 * (gi + 0.01 * w), g, p)
        np.testing.assert_allclose(
            kinetic_breaking(generator_inner(u, p, s_lin)[None], charge(p, s_lin)[None],
                             kind="scale", lr=0.1, weight_decay=0.01), 0.0, atol=1e-13)


def test_equilibrium_is_the_fixed_point_of_the_scale_law():
    """Brute-force: iterate a' = (1 - eta lambda)^2 a + eta^2 G_hat / a (the
    scale law with ||g||^2 = G_hat / ||theta||^2)."""
    with float64():
        lr, wd, ghat = 0.1, 5e-3, 2.0
        a = 0.1
        for _ in range(20000):
            a = (1 - lr * wd) ** 2 * a + lr ** 2 * ghat / a
        np.testing.assert_allclose(equilibrium_charge(ghat, lr=lr, weight_decay=wd), a,
                                   rtol=1e-10)
        with_momentum = equilibrium_charge(ghat, lr=lr, weight_decay=wd, momentum=0.9)
        np.testing.assert_allclose(with_momentum, np.sqrt(lr * ghat / (2 * wd * 0.1)), rtol=1e-12)


@pytest.mark.slow
def test_recorder_reaches_the_training_step_metrics():
    """record_metrics(conservation_record) first in the chain: the step's
    scalars hold Q(theta_t), ||g_t||^2 and <g_t, theta_t> per channel."""
    def loss_objective(params, model_state, batch, rng):
        return _toy_loss(params, batch["x"], batch["y"]), ({}, model_state)
    p = _toy_params(jax.random.PRNGKey(4))
    syms = _toy_symmetries(p)
    tx = optax.chain(record_metrics(lambda u, q: conservation_record(u, q, syms), "cons"),
                     optax.sgd(0.1))
    x, y = _toy_data(4)
    state = create_train_state(p, tx)
    assert all(float(v) == 0.0 for v in gradient_rms_metrics(state.opt_state).values())
    _, metrics = jax.jit(train_step_fn(loss_objective, tx))(state, {"x": jnp.asarray(x, jnp.float32),
                                                                    "y": jnp.asarray(y)})
    g = jax.grad(_toy_loss)(p, jnp.asarray(x, jnp.float32), y)
    want, wg = _np_charges(p), _np_charges(g)
    for c in range(C):
        np.testing.assert_allclose(metrics[f"cons/lin/charge/{c}"], want["lin"][c], rtol=1e-5)
        np.testing.assert_allclose(metrics[f"cons/lin/step/{c}"], wg["lin"][c], rtol=1e-4)
        assert abs(float(metrics[f"cons/lin/inner/{c}"])) < 1e-5
    np.testing.assert_allclose(metrics["cons/head_bias/charge"], want["head_bias"][0], rtol=1e-5)
    with pytest.raises(ValueError, match="params"):
        tx.update(g, tx.init(p))


def test_errors_name_the_argument():
    p = _toy_params(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="kind"):
        Symmetry("shift", "a", (Member(("lin", "kernel")),), 4)
    with pytest.raises(ValueError, match="outgoing"):
        Symmetry("rescale", "a", (Member(("lin", "kernel")),), 4)
    with pytest.raises(ValueError, match="name"):
        Symmetry("scale", "a/b", (Member(("lin", "kernel")),), 4)
    with pytest.raises(ValueError, match="not found"):
        charge(p, Symmetry("scale", "a", (Member(("nope", "kernel")),), 4))
    with pytest.raises(ValueError, match="multiple of num_channels"):
        charge(p, Symmetry("scale", "a", (Member(("lin", "kernel")),), 3))
    with pytest.raises(ValueError, match="not found"):
        rescale_symmetry(p, "lin", "missing")
    with pytest.raises(ValueError, match="norms"):
        sequential_symmetries(p, ["lin", "head"], norms={"other": "bn"})
    with pytest.raises(ValueError, match="lr"):
        sgd_charge(1.0, np.zeros(3), kind="scale", lr=0.0)
    with pytest.raises(ValueError, match="momentum"):
        heavy_ball_charge(1.0, np.zeros(3), kind="scale", lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="kind"):
        sgd_charge(1.0, np.zeros(3), kind="rotation", lr=0.1)
    with pytest.raises(ValueError, match="grad_step"):
        sgd_charge(1.0, 0.5, kind="scale", lr=0.1)
    with pytest.raises(ValueError, match="distinct"):
        conservation_record(p, p, translation_symmetries(p) * 2)
    with pytest.raises(ValueError, match="translation"):
        preconditioned_charge(p, p, translation_symmetries(p)[0])
    with pytest.raises(ValueError, match="fn"):
        record_metrics(3, "x")
