"""The feedback primitive against autodiff and closed forms.

* With B = W, dense and conv layers (strides 1 and 2, SAME and VALID,
  through ``conv2d``'s CPU paths) reproduce ``jax.grad`` of the plain layer.
* With B != W, the input cotangent is ``dy B^T`` (dense) or the reference
  convolution's input gradient at kernel B, the weight gradient is the
  ordinary one, and B's cotangent is zero (FA), W's (Kolen-Pollack) or the
  closed-form gradient of the local loss (Kunin et al.'s rules).
* Sign symmetry's and feedback alignment's angles to backprop at
  initialisation, with tolerances derived from the width.
"""
import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from neurojax.models import conv as conv_lib
from neurojax.models.conv import conv2d
from neurojax.rules import (Rule, apply_rule, conv_op, dense_op, feedback_conv,
                            feedback_dense, get_rule, local_loss)

DN = ("NHWC", "HWIO", "NHWC")
RULES_WITH_B = ("feedback_alignment", "kolen_pollack", "weight_mirror",
                "symmetric_alignment", "activation_alignment", "information_alignment")


def _normal(seed, *shape, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _grads(f, *args):
    """Gradients of ``sum(sin(f(...)))`` (a non-trivial output cotangent)."""
    return jax.grad(lambda *a: jnp.sum(jnp.sin(f(*a))), argnums=tuple(range(len(args))))(*args)


# --------------------------------------------------------------------- dense
@pytest.mark.parametrize("name", RULES_WITH_B)
def test_dense_with_feedback_equal_to_kernel_is_backprop(name):
    x, w = _normal(0, 6, 5), _normal(1, 5, 3)
    key = jax.random.key(0)
    dx, dw, _ = _grads(lambda x, w, b: feedback_dense(get_rule(name), x, w, b, key), x, w, w)
    ref_dx, ref_dw = _grads(lambda x, w: x @ w, x, w)
    chex.assert_trees_all_close((dx, dw), (ref_dx, ref_dw), rtol=1e-6, atol=1e-6)


def test_dense_cotangents_closed_form():
    x, w, b = _normal(0, 6, 5), _normal(1, 5, 3), _normal(2, 5, 3)
    dy = np.cos(np.asarray(x @ w))  # the cotangent of sum(sin(y))
    for name, db_expected in (("feedback_alignment", np.zeros((5, 3))),
                              ("kolen_pollack", np.asarray(x).T @ dy)):
        dx, dw, db = _grads(lambda x, w, b: feedback_dense(get_rule(name), x, w, b), x, w, b)
        np.testing.assert_allclose(dx, dy @ np.asarray(b).T, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dw, np.asarray(x).T @ dy, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(db, db_expected, rtol=1e-5, atol=1e-5)


def test_kolen_pollack_alpha_adds_decay_to_b():
    x, w, b = _normal(0, 6, 5), _normal(1, 5, 3), _normal(2, 5, 3)
    _, dw, db = _grads(lambda x, w, b: feedback_dense(Rule("kolen_pollack", alpha=0.3),
                                                      x, w, b), x, w, b)
    np.testing.assert_allclose(db, dw + 0.6 * b, rtol=1e-5, atol=1e-6)


def _local_grad_closed_form(name, c, x, w, b):
    """d R / d B for a dense layer, written out (n examples)."""
    x, w, b = (np.asarray(a, np.float64) for a in (x, w, b))
    n, xtx, r = x.shape[0], x.T @ x, x @ w
    if name == "symmetric_alignment":
        return 2 * c["alpha"] * b - c["beta"] * w
    if name == "weight_mirror":
        return 2 * c["alpha"] * b - c["beta"] * xtx @ w / n
    if name == "activation_alignment":
        return 2 * c["alpha"] * xtx @ b / n - c["beta"] * xtx @ w / n
    return (-c["alpha"] * xtx @ w / n + 2 * c["beta"] * b @ r.T @ r / n
            + 2 * c["gamma"] * b)


@pytest.mark.parametrize("name", ["weight_mirror", "symmetric_alignment",
                                  "activation_alignment", "information_alignment"])
def test_local_rule_cotangent_is_the_local_loss_gradient(name):
    rule = Rule(name, alpha=0.7, beta=1.3, **({"gamma": 0.4} if name.startswith("info") else {}),
                **({"noise_std": 0.5} if name == "weight_mirror" else {}))
    x, w, b = _normal(0, 8, 5), _normal(1, 5, 3), _normal(2, 5, 3)
    key = jax.random.key(3)
    dx, dw, db = jax.jit(lambda x, w, b: _grads(
        lambda x, w, b: feedback_dense(rule, x, w, b, key), x, w, b))(x, w, b)
    # the mirror's input is noise drawn from the key; the other rules read x
    x_local = 0.5 * jax.random.normal(key, x.shape) if name == "weight_mirror" else x
    expected = _local_grad_closed_form(name, rule.coefficients, x_local, w, b)
    np.testing.assert_allclose(db, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, np.cos(np.asarray(x @ w)) @ np.asarray(b).T,
                               rtol=1e-5, atol=1e-5)


def test_noise_without_key_raises_at_trace_time():
    x, w = _normal(0, 4, 3), _normal(1, 3, 2)
    with pytest.raises(ValueError, match="rngs"):
        _grads(lambda x, w: feedback_dense(get_rule("weight_mirror"), x, w, w), x, w)


def test_per_example_gradients_under_vmap_and_jit():
    rule = get_rule("kolen_pollack")
    x, w, b = _normal(0, 4, 5), _normal(1, 5, 3), _normal(2, 5, 3)
    one = lambda x, w, b: _grads(lambda x, w, b: feedback_dense(rule, x[None], w, b), x, w, b)
    batched = jax.jit(jax.vmap(one, in_axes=(0, None, None)))(x, w, b)
    looped = [one(x[i], w, b) for i in range(4)]
    chex.assert_trees_all_close(batched, jax.tree.map(lambda *a: jnp.stack(a), *looped),
                                rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------- conv
# (kernel, stride, padding, input size, impl): strides 1 and 2, SAME and VALID,
# through both CPU formulations ('taps' forced; 'auto': XLA's chunked weight
# gradient, per-tap 1x1/small strided ones and the polyphase input gradient).
CONV_CASES = [
    (3, 1, "SAME", 7, "auto"), (3, 1, "VALID", 7, "auto"),
    (3, 2, "SAME", 9, "auto"), (3, 2, "VALID", 9, "auto"),
    (3, 2, "SAME", 18, "auto"), (1, 2, "SAME", 7, "auto"),
    (3, 1, "SAME", 7, "taps"), (3, 1, "VALID", 7, "taps"),
    (3, 2, "SAME", 9, "taps"), (3, 2, "VALID", 9, "taps"),
]


def _conv_plan(kernel, stride, padding, size, impl):
    pads = conv_lib._explicit_padding((size, size), (kernel, kernel), (stride, stride), padding)
    shapes = ((2, size, size, 3), (kernel, kernel, 3, 4), (stride, stride), pads)
    return impl, conv_lib._cpu_weight_grad_impl(*shapes)[0], conv_lib._polyphase_input_grad(
        *shapes)


def test_conv_cases_cover_every_cpu_path():
    plans = {_conv_plan(*case) for case in CONV_CASES}
    assert ("auto", "xla", True) in plans      # polyphase input gradient
    assert ("auto", "xla", False) in plans     # XLA's (chunked) weight gradient
    assert ("auto", "taps", False) in plans    # per-tap weight gradient
    assert any(p[0] == "taps" for p in plans)  # forced taps


def _conv_inputs(kernel, size, seed=0):
    return (_normal(seed, 2, size, size, 3), _normal(seed + 1, kernel, kernel, 3, 4, scale=0.3),
            _normal(seed + 2, kernel, kernel, 3, 4, scale=0.3))


@pytest.mark.parametrize("kernel,stride,padding,size,impl", CONV_CASES)
def test_conv_with_feedback_equal_to_kernel_is_backprop(kernel, stride, padding, size, impl):
    x, w, _ = _conv_inputs(kernel, size)
    conv = functools.partial(conv2d, impl=impl)
    rule = get_rule("kolen_pollack")
    f = jax.jit(lambda x, w: _grads(lambda x, w, b: feedback_conv(
        rule, conv, x, w, b, (stride, stride), padding), x, w, w))
    dx, dw, db = f(x, w)
    ref_dx, ref_dw = jax.jit(lambda x, w: _grads(
        lambda x, w: conv(x, w, (stride, stride), padding), x, w))(x, w)
    chex.assert_trees_all_close((dx, dw, db), (ref_dx, ref_dw, ref_dw), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel,stride,padding,size,impl",
                         [CONV_CASES[i] for i in (0, 3, 4, 9)])
def test_conv_cotangents_against_the_reference_convolution(kernel, stride, padding, size,
                                                            impl):
    x, w, b = _conv_inputs(kernel, size)
    conv = functools.partial(conv2d, impl=impl)
    strides = (stride, stride)
    dx, dw, db = jax.jit(lambda x, w, b: _grads(lambda x, w, b: feedback_conv(
        get_rule("feedback_alignment"), conv, x, w, b, strides, padding), x, w, b))(x, w, b)
    ref = lambda x, k: lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=DN)
    dy = jnp.cos(ref(x, w))
    _, vjp_b = jax.vjp(ref, x, b)
    _, vjp_w = jax.vjp(ref, x, w)
    np.testing.assert_allclose(dx, vjp_b(dy)[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw, vjp_w(dy)[1], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(db, np.zeros_like(b))


def test_conv_local_rule_matches_the_reference_convolution():
    """Information alignment (amp, null through the transposed convolution,
    decay) on conv2d's fast path equals the same loss on lax's convolution."""
    from neurojax.rules import local_feedback_grad
    x, w, b = _conv_inputs(3, 9)
    rule = get_rule("information_alignment", alpha=0.5, beta=0.2, gamma=0.1)
    _, _, db = jax.jit(lambda x, w, b: _grads(lambda x, w, b: feedback_conv(
        rule, conv2d, x, w, b, (2, 2), "SAME"), x, w, b))(x, w, b)
    ref_op = lambda x, k: lax.conv_general_dilated(x, k, (2, 2), "SAME", dimension_numbers=DN)
    expected = jax.grad(lambda b: local_loss(rule.local_name, rule.coefficients, x, w, b,
                                             ref_op))(b)  # autodiff of the loss itself
    np.testing.assert_allclose(db, expected, rtol=1e-4, atol=1e-5)
    assert float(jnp.linalg.norm(expected)) > 1e-2
    # the closed form (local_feedback_grad) on lax's convolution, with and
    # without the forward projection handed in
    for projection in (None, ref_op(x, w)):
        np.testing.assert_allclose(
            local_feedback_grad(rule.local_name, rule.coefficients, x, w, b, ref_op,
                                projection=projection), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["weight_mirror", "symmetric_alignment",
                                  "activation_alignment", "information_alignment"])
def test_closed_form_local_gradient_equals_autodiff_of_the_local_loss_on_a_conv(name):
    from neurojax.rules import local_feedback_grad
    x, w, b = _conv_inputs(4, 11)
    coefficients = {"alpha": 0.7, "beta": 1.3, "gamma": 0.4}
    op = lambda x, k: lax.conv_general_dilated(x, k, (2, 2), "SAME", dimension_numbers=DN)
    expected = jax.grad(lambda b: local_loss(name, coefficients, x, w, b, op))(b)
    got = local_feedback_grad(name, coefficients, x, w, b, op)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------ sign symmetry
def test_sign_symmetry_feedback_weights():
    w, b0 = _normal(0, 3, 3, 4, 5), _normal(1, 3, 3, 4, 5)
    fixed = get_rule("sign_symmetry").feedback_weights(w, None)
    np.testing.assert_allclose(fixed, np.sign(w) / math.sqrt(3 * 3 * 4), rtol=1e-6)
    scaled = get_rule("sign_symmetry", sign_scale=2.0).feedback_weights(w, None)
    np.testing.assert_allclose(scaled, 2.0 * np.sign(w), rtol=1e-6)
    random = get_rule("sign_symmetry", magnitude="random").feedback_weights(w, b0)
    np.testing.assert_allclose(random, np.abs(b0) * np.sign(w), rtol=1e-6)


def test_sign_symmetry_keeps_the_weight_gradient_exact():
    x, w, b0 = _normal(0, 6, 5), _normal(1, 5, 3), _normal(2, 5, 3)
    for rule in (get_rule("sign_symmetry"), get_rule("sign_symmetry", magnitude="random")):
        dx, dw, db0 = _grads(lambda x, w, b: apply_rule(rule, dense_op, x, w, b), x, w, b0)
        dy = np.cos(np.asarray(x @ w))
        np.testing.assert_allclose(dw, np.asarray(x).T @ dy, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dx, dy @ np.asarray(rule.feedback_weights(w, b0)).T,
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(db0, np.zeros_like(b0))


def _angle_deg(a, b):
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    return math.degrees(math.acos(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))


# A wide layer: n_in x n_out Gaussian weights, a batch of isotropic output errors.
N_IN, N_OUT, BATCH = 512, 256, 64


def _delta_angle(rule, w, b):
    """Angle between the error the rule sends below and backprop's, for a
    batch of isotropic Gaussian output cotangents."""
    x, dy = _normal(7, BATCH, N_IN), _normal(8, BATCH, N_OUT)
    _, vjp = jax.vjp(lambda x: apply_rule(rule, dense_op, x, w, b), x)
    return _angle_deg(vjp(dy)[0], dy @ w.T)


def _error_angle_sd(w, b, batch):
    """Standard deviation (degrees) of the errors' angle over the output
    cotangents, for fixed W and B: with rows q of dy ~ N(0, I), the cosine
    is f(N, D1, D2) = N / sqrt(D1 D2) of the sums over rows of q^T M q
    (M = B^T W), q^T B^T B q and q^T W^T W q; to first order (delta method)
    it moves by q^T A q per row with
    A = sym(M) / sqrt(E1 E2) - (f/2) (B^T B / E1 + W^T W / E2),
    E the traces, and Var(q^T A q) = 2 tr(A^2). So
    sd(cos) = sqrt(2 tr(A^2) / batch), and sd(angle) = sd(cos) / sin(angle).
    (Checked against 150 draws: 0.191 predicted, 0.191 measured for sign
    symmetry at this width.)"""
    w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
    m = b.T @ w
    e1, e2 = np.trace(b.T @ b), np.trace(w.T @ w)
    f = np.trace(m) / math.sqrt(e1 * e2)
    a = (m + m.T) / (2 * math.sqrt(e1 * e2)) - 0.5 * f * (b.T @ b / e1 + w.T @ w / e2)
    return math.degrees(math.sqrt(2 * np.sum(a * a) / batch) / math.sqrt(1 - f * f))


def test_sign_symmetry_angle_at_init_is_arccos_sqrt_2_over_pi():
    """cos(W, s sign(W)) = mean|w| / rms(w) -> E|w| / sqrt(E w^2) = sqrt(2/pi).

    Delta method over the N = n_in n_out weights: Var(cos_hat) =
    Var(|w| - (a/2) w^2) / N = (1 - 3/pi) / N with a = sqrt(2/pi), so the
    angle's standard deviation is sqrt(1 - 3/pi) / (sin(theta) sqrt(N))
    radians (0.056 degrees here). The errors sent below have the same limit
    (E <dy B^T, dy W^T> = batch <B, W> for isotropic dy) plus the batch's
    fluctuation (``_error_angle_sd``, 0.19 degrees here); the test allows
    5 standard deviations of their sum.
    """
    theta = math.degrees(math.acos(math.sqrt(2 / math.pi)))
    assert abs(theta - 37.1) < 0.05
    sd_w = math.degrees(math.sqrt(1 - 3 / math.pi) / (math.sin(math.radians(theta))
                                                       * math.sqrt(N_IN * N_OUT)))
    w = _normal(0, N_IN, N_OUT, scale=N_IN ** -0.5)
    rule = get_rule("sign_symmetry")
    b = rule.feedback_weights(w, None)
    assert abs(_angle_deg(w, b) - theta) < 5 * sd_w
    sd = math.hypot(sd_w, _error_angle_sd(w, b, BATCH))
    assert abs(_delta_angle(rule, w, None) - theta) < 5 * sd
    # Magnitudes drawn at random (|B0| sign W): cos -> E|b| E|w| = 2/pi (50.5
    # degrees); the same delta method with u = |b||w| gives Var(cos_hat) =
    # (1 - 8/pi^2) / N.
    b0 = _normal(1, N_IN, N_OUT, scale=N_IN ** -0.5)
    random = get_rule("sign_symmetry", magnitude="random")
    theta_r = math.acos(2 / math.pi)
    sd_w = math.degrees(math.sqrt(1 - 8 / math.pi ** 2)
                        / (math.sin(theta_r) * math.sqrt(N_IN * N_OUT)))
    sd = math.hypot(sd_w, _error_angle_sd(w, random.feedback_weights(w, b0), BATCH))
    assert abs(_delta_angle(random, w, b0) - math.degrees(theta_r)) < 5 * sd


def test_feedback_alignment_angle_at_init_is_near_90_degrees():
    """Independent Gaussian W, B: cos(W, B) ~ N(0, 1/N), N = n_in n_out
    (0.16 degrees); the errors add the batch's fluctuation
    (``_error_angle_sd``, 0.32 degrees here). Five standard deviations."""
    w = _normal(0, N_IN, N_OUT, scale=N_IN ** -0.5)
    b = _normal(1, N_IN, N_OUT, scale=N_IN ** -0.5)
    sd_w = math.degrees(1 / math.sqrt(N_IN * N_OUT))
    assert abs(_angle_deg(w, b) - 90) < 5 * sd_w
    sd = math.hypot(sd_w, _error_angle_sd(w, b, BATCH))
    assert abs(_delta_angle(get_rule("feedback_alignment"), w, b) - 90) < 5 * sd
    assert _delta_angle(get_rule("kolen_pollack"), w, w) < 1e-2  # B = W: aligned


# --------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs,match", [
    ({"name": "hebbian"}, "rule.name"),
    ({"name": "feedback_alignment", "alpha": 1.0}, "rule.alpha"),
    ({"name": "weight_mirror", "alpha": -1.0}, "rule.alpha"),
    ({"name": "weight_mirror", "noise_std": 0.0}, "rule.noise_std"),
    ({"name": "sign_symmetry", "magnitude": "gaussian"}, "rule.magnitude"),
    ({"name": "sign_symmetry", "magnitude": "random", "sign_scale": 1.0}, "sign_scale"),
])
def test_invalid_rules_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Rule(**kwargs)


def test_get_rule_from_a_config_mapping():
    rule = get_rule({"name": "information_alignment", "gamma": 0.5})
    assert (rule.alpha, rule.beta, rule.gamma) == (2e-3, 1e-3, 0.5)
    assert get_rule(rule, alpha=1.0).alpha == 1.0
    with pytest.raises(ValueError, match="unknown rule field"):
        get_rule({"name": "weight_mirror", "lr": 0.1})
    with pytest.raises(ValueError, match="'name'"):
        get_rule({"alpha": 0.1})


def test_conv_op_is_the_convolution():
    x, w, _ = _conv_inputs(3, 7)
    op = conv_op(conv2d, (2, 2), "VALID")
    np.testing.assert_allclose(op(x, w), lax.conv_general_dilated(
        x, w, (2, 2), "VALID", dimension_numbers=DN), rtol=1e-5, atol=1e-5)
