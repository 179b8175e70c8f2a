"""Gradient amplification (Oland 2024, Efficient Deep Learning, Ch. 4): the
losses against NumPy, their gradients against the deltas written out, the
manual-delta form against the loss form, the minimisers, and the Hessian
claims of Sec 4.14 against jax.hessian."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import optimize

from neurojax.losses import (LOSSES, amplified_delta_loss, amplified_output, get_loss,
                             label_mean_squared_error, negative_correlation, output_delta,
                             softmax_cross_entropy, softmax_normalizer, sparse_cross_entropy,
                             squared_error_curvature)
from tests._x64 import float64

# the target pairs the chapter uses (Sec 4.5-4.12)
CHAPTER_TARGETS = [(0.0, 16.0), (0.0, 10.0), (-2.0, 10.0), (0.0, 2.0), (-1.0, 1.0)]


def _problem(seed=0, shape=(6, 5), scale=2.0):
    rng = np.random.default_rng(seed)
    x = (scale * rng.normal(size=shape)).astype(np.float32)
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    return x, labels


def _t(labels, num_classes, targets):
    low, high = targets
    return np.where(np.eye(num_classes)[labels] > 0, high, low)


def _grad(loss_fn, x, labels, **hyper):
    return np.asarray(jax.grad(lambda z: loss_fn(z, {"label": labels}, **hyper)[0])(
        jnp.asarray(x)))


# ----------------------------------------------------------------------------- loss values


def test_sparse_cross_entropy_is_l1_plus_cross_entropy_of_y():
    """L = mean_b sum_k |y| - t ln y with y = alpha e^x, written in NumPy."""
    x, labels = _problem()
    alpha, targets = 0.1, (0.0, 16.0)
    loss, aux = jax.jit(lambda z, b: sparse_cross_entropy(z, b, alpha=alpha, targets=targets))(
        x, {"label": labels})
    y = alpha * np.exp(x.astype(np.float64))
    t = _t(labels, 5, targets)
    np.testing.assert_allclose(float(loss), np.mean(np.sum(np.abs(y) - t * np.log(y), -1)),
                               rtol=1e-5)
    assert float(aux["accuracy"]) == pytest.approx(np.mean(x.argmax(-1) == labels))


def test_negative_correlation_against_numpy():
    x, labels = _problem(1)
    alpha, beta, targets = 0.001, 0.4, (-2.0, 10.0)
    loss, aux = negative_correlation(x, {"label": labels}, alpha=alpha, beta=beta,
                                     targets=targets)
    z, t = x.astype(np.float64), _t(labels, 5, targets)
    want = np.mean(np.sum(alpha * z ** 4 / 4 + beta * z - t * z, -1))
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    assert float(aux["accuracy"]) == pytest.approx(np.mean(x.argmax(-1) == labels))


# ----------------------------------------------------------------------------- the deltas


@pytest.mark.parametrize("targets", [t for t in CHAPTER_TARGETS if t[0] >= 0])
@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0])
def test_sparse_cross_entropy_gradient_is_exp_delta(targets, alpha):
    """dL/dx = (alpha e^x - t) / B (Sec 4.6)."""
    x, labels = _problem(2)
    want = (alpha * np.exp(x.astype(np.float64)) - _t(labels, 5, targets)) / 6
    np.testing.assert_allclose(_grad(sparse_cross_entropy, x, labels, alpha=alpha,
                                     targets=targets), want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("targets", CHAPTER_TARGETS)
@pytest.mark.parametrize("alpha,beta", [(0.001, 0.4), (0.001, 0.0), (0.0007, 0.0)])
def test_negative_correlation_gradient_is_cubic_delta(targets, alpha, beta):
    """dL/dx = (alpha x^3 + beta - t) / B (Sec 4.8)."""
    x, labels = _problem(3, scale=10.0)
    z = x.astype(np.float64)
    want = (alpha * z ** 3 + beta - _t(labels, 5, targets)) / 6
    np.testing.assert_allclose(_grad(negative_correlation, x, labels, alpha=alpha, beta=beta,
                                     targets=targets), want, rtol=2e-5, atol=1e-6)


def test_squared_error_baselines_delta():
    """Linear + squared error has the delta y - t; with sigmoid or tanh
    outputs the squared error's gradient is (y - t) g'(x), not y - t (the
    canonical delta of a sigmoid is that of its cross-entropy)."""
    x, labels = _problem(4)
    z = x.astype(np.float64)
    t = _t(labels, 5, (-1.0, 1.0))
    np.testing.assert_allclose(_grad(label_mean_squared_error, x, labels, output="linear",
                                     targets=(-1.0, 1.0)), (z - t) / 6, rtol=1e-5, atol=1e-7)
    for output, g in (("sigmoid", lambda v: 1 / (1 + np.exp(-v))), ("tanh", np.tanh)):
        chain = _grad(label_mean_squared_error, x, labels, output=output, targets=(-1.0, 1.0))
        canonical = (g(z) - t) / 6
        assert np.max(np.abs(chain - canonical)) > 0.05  # differs by the factor g'(x)
        np.testing.assert_allclose(_grad(amplified_delta_loss, x, labels, output=output,
                                         targets=(-1.0, 1.0)), canonical, rtol=1e-5, atol=1e-7)


def test_softmax_delta_is_bounded_and_saturates_exp_delta_grows():
    """Sec 4.2-4.5: softmax's delta lies in [-1, 1] and vanishes as the margin
    grows; exp-GA's delta grows like alpha e^x."""
    x, labels = _problem(5, scale=5.0)
    d = np.asarray(output_delta(x, labels, output="softmax"))
    assert np.all(np.abs(d) <= 1.0)
    margins = np.array([0.0, 2.0, 5.0, 10.0, 20.0])
    logits = np.stack([margins, np.zeros_like(margins), np.zeros_like(margins)], -1)
    sat = np.abs(np.asarray(output_delta(logits, np.zeros(5, int), output="softmax")))
    assert np.all(np.diff(sat.max(-1)) < 0) and sat.max() < 1 and sat[-1].max() < 1e-8
    grow = np.asarray(output_delta(np.array([[10.0, 0.0]]), np.array([1]), output="exp",
                                   alpha=0.1, targets=(0.0, 16.0)))
    np.testing.assert_allclose(grow[0, 0], 0.1 * np.exp(10.0), rtol=1e-6)


def test_argmax_of_logits_is_argmax_of_outputs():
    """The output maps are increasing, so accuracy can be taken on the logits."""
    x, _ = _problem(6, shape=(50, 7), scale=3.0)
    for output in ("exp", "pow3", "sigmoid", "tanh", "softmax", "linear"):
        y = np.asarray(amplified_output(x, output))
        np.testing.assert_array_equal(y.argmax(-1), x.argmax(-1))


# ----------------------------------------------------------------------------- manual delta


@pytest.mark.parametrize("output,reference,hyper", [
    ("exp", sparse_cross_entropy, dict(alpha=0.1, targets=(0.0, 16.0))),
    ("exp", sparse_cross_entropy, dict(alpha=0.5, targets=(0.0, 2.0))),
    ("pow3", negative_correlation, dict(alpha=0.001, beta=0.4, targets=(0.0, 10.0))),
    ("pow3", negative_correlation, dict(alpha=0.0007, beta=0.0, targets=(-1.0, 1.0))),
    ("linear", lambda z, b, targets: label_mean_squared_error(z, b, targets=targets),
     dict(targets=(-1.0, 1.0))),
])
def test_manual_delta_gradient_equals_the_loss_gradient(output, reference, hyper):
    x, labels = _problem(7)
    np.testing.assert_allclose(_grad(amplified_delta_loss, x, labels, output=output, **hyper),
                               _grad(reference, x, labels, **hyper), rtol=2e-5, atol=1e-7)
    # the reported value is (1/2) mean ||y - t||^2
    y = np.asarray(amplified_output(x, output, alpha=hyper.get("alpha"), beta=hyper.get("beta")))
    value, _ = amplified_delta_loss(x, {"label": labels}, output=output, **hyper)
    want = 0.5 * np.mean(np.sum((y - _t(labels, 5, hyper["targets"])) ** 2, -1))
    np.testing.assert_allclose(float(value), want, rtol=1e-5)


def test_manual_delta_of_bounded_outputs_equals_their_canonical_losses():
    """sigmoid: binary cross-entropy (optax); tanh: ln cosh x - t x;
    softmax with targets (0, 1): softmax cross-entropy."""
    x, labels = _problem(8)
    t01 = _t(labels, 5, (0.0, 1.0))
    bce = lambda z, b: (jnp.mean(jnp.sum(optax.sigmoid_binary_cross_entropy(z, t01), -1)), {})
    np.testing.assert_allclose(_grad(amplified_delta_loss, x, labels, output="sigmoid"),
                               _grad(bce, x, labels), rtol=1e-5, atol=1e-7)
    tpm = _t(labels, 5, (-1.0, 1.0))
    tanh_loss = lambda z, b: (jnp.mean(jnp.sum(jnp.log(jnp.cosh(z)) - tpm * z, -1)), {})
    np.testing.assert_allclose(_grad(amplified_delta_loss, x, labels, output="tanh"),
                               _grad(tanh_loss, x, labels), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(_grad(amplified_delta_loss, x, labels, output="softmax"),
                               _grad(softmax_cross_entropy, x, labels), rtol=1e-5, atol=1e-7)


def test_manual_delta_through_a_network_gives_the_loss_parameter_gradient():
    """J^T delta: the parameter gradients of the two forms agree."""
    model = nn.Dense(4)
    rng = np.random.default_rng(9)
    inputs = rng.normal(size=(8, 3)).astype(np.float32)
    labels = rng.integers(0, 4, 8)
    params = model.init(jax.random.PRNGKey(0), inputs)

    def grads(loss_fn, **hyper):
        return jax.jit(jax.grad(lambda p: loss_fn(model.apply(p, inputs), {"label": labels},
                                                  **hyper)[0]))(params)
    chex.assert_trees_all_close(grads(amplified_delta_loss, output="pow3"),
                                grads(negative_correlation), rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(grads(amplified_delta_loss, output="exp"),
                                grads(sparse_cross_entropy), rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- minimisers


def test_per_node_minimisers():
    """NCL: x* = cbrt((t - beta) / alpha) (21.25 for t=10, -7.368 for t=0 at
    alpha=0.001, beta=0.4); sparse CE: x* = ln(t / alpha) for t > 0, none for
    t = 0 (the loss falls towards 0 as x -> -inf)."""
    with float64():
        alpha, beta = 0.001, 0.4
        for t, printed in ((10.0, 21.25), (0.0, -7.368), (-2.0, None)):
            x_star = np.cbrt((t - beta) / alpha)
            if printed is not None:
                assert x_star == pytest.approx(printed, abs=5e-3)
            node = jax.jit(lambda v: negative_correlation(
                jnp.stack([v, 0.0])[None], {"label": np.array([1])}, alpha=alpha, beta=beta,
                targets=(t, t + 1))[0])
            assert abs(float(jax.grad(node)(x_star))) < 1e-10
            found = optimize.minimize_scalar(lambda v: float(node(v)), bracket=(-30.0, 30.0),
                                             tol=1e-12).x
            assert found == pytest.approx(x_star, abs=1e-4)
        for alpha, t in ((0.1, 16.0), (0.5, 2.0), (1.0, 3.0)):
            x_star = np.log(t / alpha)
            node = jax.jit(lambda v: sparse_cross_entropy(
                jnp.stack([0.0, v])[None], {"label": np.array([1])}, alpha=alpha,
                targets=(0.0, t))[0])
            assert abs(float(jax.grad(node)(x_star))) < 1e-10
            found = optimize.minimize_scalar(lambda v: float(node(v)), bracket=(-5.0, 10.0),
                                             tol=1e-12).x
            assert found == pytest.approx(x_star, abs=1e-4)
        # t = 0: gradient alpha e^x > 0 everywhere, loss -> 0 as x -> -inf
        zero = jax.jit(lambda v: sparse_cross_entropy(
            jnp.stack([v, 0.0])[None], {"label": np.array([1])}, alpha=0.1,
            targets=(0.0, 16.0))[0])
        other = 0.1 - 16.0 * np.log(0.1)  # the positive class's term (x = 0)
        grid = np.linspace(-12.0, 5.0, 10)
        values = np.array([float(zero(v)) for v in grid]) - other
        np.testing.assert_allclose(values, 0.1 * np.exp(grid), rtol=1e-8)
        assert np.all(np.diff(values) > 0) and abs(float(zero(-40.0)) - other) < 1e-12
        assert all(float(jax.grad(zero)(v)) > 0 for v in grid)


# ----------------------------------------------------------------------------- Sec 4.14


def _hess_1d(f, t):
    return jax.jit(jax.vmap(jax.hessian(lambda x: 0.5 * (f(x) - t) ** 2)))


def test_eqs_4_1_to_4_4_hold_with_the_half_and_s_constant():
    """jax.hessian of E = (1/2)(f(x) - t)^2 reproduces the printed Eqs 4.1-4.4
    (the printed left sides omit the 1/2, whose Hessian is twice these), and
    squared_error_curvature's two terms sum to it for every output map."""
    with float64():
        x = jnp.linspace(-3.0, 3.0, 13)
        for t, s in ((1.0, 7.0), (16.0, 1.3)):
            printed = {
                "linear": (lambda z: z, np.ones_like(x)),                                 # 4.1
                "softmax": (lambda z: jnp.exp(z) / s,
                            np.exp(2 * x) / s ** 2 - np.exp(x) / s * (t - np.exp(x) / s)),  # 4.2
                "exp": (jnp.exp, np.exp(2 * x) - np.exp(x) * (t - np.exp(x))),            # 4.3
                "pow3": (lambda z: z ** 3, 9 * x ** 4 - 6 * x * (-x ** 3 + t)),          # 4.4
            }
            for output, (f, want) in printed.items():
                got = _hess_1d(f, t)(x)
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
                first, second = squared_error_curvature(x, t, output, s=s)
                np.testing.assert_allclose(first + second, want, rtol=1e-12, atol=1e-12)
                no_half = jax.vmap(jax.hessian(lambda z: (f(z) - t) ** 2))(x)
                np.testing.assert_allclose(no_half, 2 * want, rtol=1e-12, atol=1e-12)
            for output, f, hyper in (("sigmoid", jax.nn.sigmoid, {}), ("tanh", jnp.tanh, {}),
                                     ("exp", lambda z: 0.1 * jnp.exp(z), dict(alpha=0.1)),
                                     ("pow3", lambda z: 0.001 * z ** 3 + 0.4,
                                      dict(alpha=0.001, beta=0.4))):
                first, second = squared_error_curvature(x, t, output, **hyper)
                np.testing.assert_allclose(first + second, _hess_1d(f, t)(x), rtol=1e-12,
                                           atol=1e-12)


def test_first_term_ordering_claim_holds_only_in_part():
    """Sec 4.14 claims 9x^4 > e^{2x} > e^{2x}/s^2 > 1 "as x -> +-inf" for s > 1.
    9x^4 = e^{2x} where 3x^2 = e^x: x = -0.459, 0.910, 3.733; beyond 3.733
    e^{2x} wins. e^{2x} < 1 for every x < 0. And a softmax's s includes e^x, so
    e^{2x}/s^2 = y^2 <= 1 always: never above the linear curvature 1."""
    crossing = lambda a, b: optimize.brentq(lambda v: 3 * v ** 2 - np.exp(v), a, b)
    roots = [crossing(-1.0, 0.0), crossing(0.0, 2.0), crossing(2.0, 5.0)]
    np.testing.assert_allclose(roots, [-0.4590, 0.9100, 3.7331], atol=5e-4)
    with float64():
        first = lambda output, x, **kw: np.asarray(squared_error_curvature(
            jnp.asarray(x), 0.0, output, **kw)[0])
        x = np.array([-30.0, -10.0, -2.0, 1.5, 3.0, 3.7])     # 9x^4 > e^{2x} holds here
        assert np.all(first("pow3", x) > first("exp", x))
        x = np.array([0.0, 0.5, 3.8, 5.0, 10.0, 30.0])       # and fails here (x -> +inf)
        assert np.all(first("pow3", x) < first("exp", x))
        x = np.array([-30.0, -5.0, -0.1])                     # e^{2x} > 1 fails for x < 0
        assert np.all(first("exp", x) < first("linear", x))
        assert np.all(first("softmax", x, s=1.5) < first("exp", x))  # e^{2x}/s^2 < e^{2x}, s > 1
        logits = np.random.default_rng(10).normal(scale=4.0, size=(200, 10))
        s = np.asarray(softmax_normalizer(logits))
        ratio = np.exp(2 * logits) / s[:, None] ** 2                 # e^{2x_j}/s^2 = y_j^2
        assert np.all(ratio <= 1.0) and np.all(s > np.exp(logits).max(-1) - 1e-12)


def test_curvature_at_the_minimum_is_not_zero():
    """Sec 4.14 reasons that H ~ 0 near a minimum, the two terms cancelling.
    At f(x*) = t the second term is 0 and H = f'(x*)^2 > 0: t^2 for exp (and
    for the softmax with s fixed), 9 t^{4/3} for x^3, 1 for linear."""
    with float64():
        for t in (0.5, 2.0, 16.0):
            for output, f, x_star, want in (
                    ("exp", jnp.exp, np.log(t), t ** 2),
                    ("pow3", lambda z: z ** 3, np.cbrt(t), 9 * t ** (4 / 3)),
                    ("linear", lambda z: z, t, 1.0)):
                first, second = squared_error_curvature(x_star, t, output)
                assert abs(float(second)) < 1e-12
                np.testing.assert_allclose(float(_hess_1d(f, t)(jnp.array([x_star]))[0]), want,
                                           rtol=1e-10)


def test_loss_hessians_of_ga_and_softmax_cross_entropy():
    """Sec 4.14's "Hessians" of the deltas: the loss Hessians with respect to
    the logits are diag(alpha e^x) for sparse CE and diag(3 alpha x^2) for NCL
    (the printed e^x and 3x^2 with alpha = 1); for softmax + CE it is
    diag(p) - p p^T, whose diagonal is p(1 - p) <= 1/4 and trace 1 - ||p||^2 < 1,
    not the printed 1."""
    with float64():
        x = jnp.asarray(np.random.default_rng(11).normal(scale=2.0, size=(1, 6)))
        batch = {"label": np.array([2])}
        for alpha in (1.0, 0.1):
            h = jax.hessian(lambda z: sparse_cross_entropy(z, batch, alpha=alpha)[0])(x)[0, :, 0]
            np.testing.assert_allclose(h, np.diag(alpha * np.exp(x[0])), rtol=1e-12, atol=1e-15)
        for alpha in (1.0, 0.001):
            h = jax.hessian(lambda z: negative_correlation(z, batch, alpha=alpha)[0])(x)[0, :, 0]
            np.testing.assert_allclose(h, np.diag(3 * alpha * x[0] ** 2), rtol=1e-12, atol=1e-15)
        logits = np.random.default_rng(12).normal(scale=3.0, size=(50, 6))
        hessians = np.asarray(jax.jit(jax.vmap(jax.hessian(
            lambda z: softmax_cross_entropy(z[None], batch)[0])))(jnp.asarray(logits)))
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        want = jax.vmap(jnp.diag)(p) - p[:, :, None] * p[:, None, :]
        np.testing.assert_allclose(hessians, want, atol=1e-6)  # the loss computes in float32
        diagonals = np.diagonal(hessians, axis1=1, axis2=2)
        assert np.all(diagonals <= 0.25 + 1e-7) and np.all(diagonals.sum(-1) < 1.0)
        np.testing.assert_allclose(diagonals.sum(-1), 1 - np.sum(p ** 2, -1), atol=1e-6)


# ----------------------------------------------------------------------------- contract


AMPLIFIED = [("sparse_cross_entropy", {}), ("negative_correlation", {}),
             ("amplified_delta", {"output": "exp"}), ("amplified_delta", {"output": "pow3"})]


@pytest.mark.parametrize("name,hyper", AMPLIFIED)
def test_jit_vmap_dtype_and_shapes(name, hyper):
    loss_fn = get_loss(name)
    x, labels = _problem(13, shape=(3, 6, 5))       # a stack of 3 batches (e.g. replicas)
    eager = [loss_fn(x[i], {"label": labels[i]}, **hyper) for i in range(3)]
    vmapped = jax.jit(jax.vmap(lambda z, b: loss_fn(z, b, **hyper)))(x, {"label": labels})
    chex.assert_trees_all_close(vmapped, jax.tree.map(lambda *v: jnp.stack(v), *eager),
                                rtol=1e-5)
    grads = jax.jit(jax.vmap(jax.grad(lambda z, b: loss_fn(z, b, **hyper)[0])))(
        x, {"label": labels})
    chex.assert_trees_all_close(grads[1], jax.grad(lambda z: loss_fn(
        z, {"label": labels[1]}, **hyper)[0])(jnp.asarray(x[1])), rtol=1e-5)
    # bfloat16 logits: computed in float32, close to the float32 loss
    loss16, aux16 = loss_fn(jnp.asarray(x[0], jnp.bfloat16), {"label": labels[0]}, **hyper)
    assert loss16.dtype == jnp.float32
    np.testing.assert_allclose(float(loss16), float(eager[0][0]), rtol=0.05)
    # per-pixel logits [B, H, W, C]: mean over B, H, W of the per-pixel loss
    pix, pix_labels = _problem(14, shape=(2, 3, 4, 5))
    whole = loss_fn(pix, {"label": pix_labels}, **hyper)[0]
    flat = loss_fn(pix.reshape(-1, 5), {"label": pix_labels.reshape(-1)}, **hyper)[0]
    np.testing.assert_allclose(float(whole), float(flat), rtol=1e-6)


def test_softmax_normalizer_against_numpy():
    x, _ = _problem(15, scale=3.0)
    np.testing.assert_allclose(np.asarray(jax.jit(softmax_normalizer)(x)),
                               np.exp(x.astype(np.float64)).sum(-1), rtol=1e-5)
    big = np.array([[500.0, 499.0, 0.0]], np.float32)
    np.testing.assert_allclose(np.asarray(softmax_normalizer(big, log=True)),
                               500.0 + np.log1p(np.exp(-1.0)), rtol=1e-6)


def test_registered_and_configs_pass_lists():
    for name in ("sparse_cross_entropy", "negative_correlation", "amplified_delta"):
        assert name in LOSSES
    x, labels = _problem(16)
    a = sparse_cross_entropy(x, {"label": labels}, targets=[0, 2], alpha=0.5)[0]
    b = sparse_cross_entropy(x, {"label": labels}, targets=(0.0, 2.0), alpha=0.5)[0]
    assert float(a) == float(b)


@pytest.mark.parametrize("call,match", [
    (lambda x, b: sparse_cross_entropy(x, b, alpha=0.0), "alpha"),
    (lambda x, b: sparse_cross_entropy(x, b, targets=(-1.0, 1.0)), "targets of exp-GA"),
    (lambda x, b: negative_correlation(x, b, alpha=-1.0), "alpha"),
    (lambda x, b: negative_correlation(x, b, beta=-0.1), "beta"),
    (lambda x, b: negative_correlation(x, b, targets=(10.0, 0.0)), "negative < positive"),
    (lambda x, b: negative_correlation(x, b, targets=(0.0,)), "pair"),
    (lambda x, b: negative_correlation(x, b, targets=(0.0, float("nan"))), "targets"),
    (lambda x, b: amplified_delta_loss(x, b, output="relu"), "output"),
    (lambda x, b: amplified_delta_loss(x, b, output="linear", alpha=0.1), "alpha is not used"),
    (lambda x, b: amplified_delta_loss(x, b, output="exp", beta=0.1), "beta is not used"),
    (lambda x, b: output_delta(x, b["label"], output="exp", alpha=-0.1), "alpha"),
    (lambda x, b: squared_error_curvature(x, 0.0, "softmax", s=0.0), "s must"),
])
def test_invalid_hyperparameters_name_the_argument(call, match):
    x, labels = _problem(17)
    with pytest.raises(ValueError, match=match):
        call(x, {"label": labels})
