"""Pruning scores at initialisation (Tanaka et al. 2020; Lee et al. 2019; Wang
et al. 2020): SynFlow against its closed form and the layer-wise conservation,
SNIP and GraSP against independent derivatives."""
import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from neurojax.metrics import saliency
from neurojax.models import VGG
from neurojax.optim.pruning import path_name
from tests._pruning import apply_of, mlp
from tests._x64 import float64


def _kernels(params):
    names = sorted(params, key=lambda n: (n == "head", n))  # dense_0, dense_1, ..., head
    return names, [np.asarray(params[n]["kernel"], np.float64) for n in names]


def test_synflow_scores_equal_the_closed_form_and_are_conserved_per_layer():
    """Without biases, S^[l] = |W^[l]| * (a_l b_l^T) with a_l = |W^[L]..W^[l+1]|^T 1 and
    b_l = |W^[l-1]..W^[1]| 1 (NumPy, float64), and sum_l S = R = 1^T prod |W| 1 for
    every layer (Theorem 2's layer-wise conservation)."""
    with float64():
        model, params = mlp((7, 5), 4, 3, dtype=jnp.float64)
        scores = jax.jit(functools.partial(saliency.synflow_scores, apply_of(model),
                                           input_shape=(4,)))(params)
        names, ws = _kernels(params)
        ws = [np.abs(w) for w in ws]  # x @ W convention: W is (in, out)
        r = np.ones(4)
        for w in ws:
            r = r @ w
        big_r = r.sum()
        for i, name in enumerate(names):
            b = np.ones(4)
            for w in ws[:i]:
                b = b @ w
            a = np.ones(3)
            for w in reversed(ws[i + 1:]):
                a = w @ a
            expected = ws[i] * np.outer(b, a)
            s = np.asarray(scores[name]["kernel"])
            np.testing.assert_allclose(s, expected, rtol=1e-12)
            np.testing.assert_allclose(s.sum(), big_r, rtol=1e-12)
        r_lib = saliency.synflow_objective(apply_of(model), jax.tree.map(jnp.abs, params), (4,))
        np.testing.assert_allclose(float(r_lib), big_r, rtol=1e-13)


@pytest.mark.slow
def test_synflow_conservation_through_vgg_with_batchnorm_in_eval_mode():
    """VGG-11 with BatchNorm at initialisation (zero biases and BN shifts): each conv
    kernel, BN scale and the head kernel carries exactly R (Euler's theorem)."""
    with float64():
        model = VGG(depth=11, width_factor=1 / 32, num_classes=3)
        v = model.init(jax.random.PRNGKey(1), jnp.ones((1, 4, 4, 3)))
        params = jax.tree.map(lambda x: x.astype(jnp.float64), v["params"])
        state = {"batch_stats": v["batch_stats"]}
        fn = lambda var, x: model.apply(var, x, train=False)  # noqa: E731
        scores, big_r = jax.jit(lambda p: (
            saliency.synflow_scores(fn, p, (4, 4, 3), model_state=state),
            saliency.synflow_objective(fn, jax.tree.map(jnp.abs, p), (4, 4, 3),
                                      model_state=state)))(params)
        for path, s in jax.tree_util.tree_flatten_with_path(scores)[0]:
            name = path_name(path)
            expected = 0.0 if name.endswith("bias") else float(big_r)
            np.testing.assert_allclose(float(jnp.sum(s)), expected, rtol=1e-12, atol=1e-12,
                                       err_msg=name)


def test_snip_and_grasp_scores_match_independent_derivatives():
    """SNIP = |d L(theta * m) / dm| at m = 1 (autodiff through the mask); GraSP's
    keep-score = theta * (H g) with H the dense Hessian of the flattened loss."""
    with float64():
        model, params = mlp((5,), 3, 2, dtype=jnp.float64)
        x = jax.random.normal(jax.random.PRNGKey(0), (7, 3), jnp.float64)
        y = jnp.arange(7) % 2

        def loss(p):
            return optax.softmax_cross_entropy_with_integer_labels(
                model.apply({"params": p}, x) / 3.0, y).mean()

        ones = jax.tree.map(jnp.ones_like, params)
        via_mask = jax.jit(jax.grad(lambda m: loss(jax.tree.map(jnp.multiply, params, m))))(
            ones)
        snip = jax.jit(functools.partial(saliency.snip_scores, loss))(params)
        for a, b in zip(jax.tree.leaves(snip), jax.tree.leaves(via_mask)):
            np.testing.assert_allclose(a, np.abs(b), rtol=1e-12)

        flat, unravel = jax.flatten_util.ravel_pytree(params)
        h, g = jax.jit(lambda f: (jax.hessian(lambda z: loss(unravel(z)))(f),
                                  jax.grad(lambda z: loss(unravel(z)))(f)))(flat)
        expected = np.asarray(flat) * (np.asarray(h) @ np.asarray(g))
        got = jax.jit(lambda p: jax.flatten_util.ravel_pytree(
            saliency.grasp_scores(loss, p))[0])(params)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-16)
