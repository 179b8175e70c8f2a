"""Gradient and weight angles against numpy's arccos of the normalised dot product."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.metrics.credit_assignment import (alignment_metrics, angle, gradient_angles,
                                                layer_paths, weight_angles)


def _np_angle(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return np.degrees(np.arccos(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))))


def _tree(key, feedback=True):
    k = jax.random.split(key, 6)
    tree = {"dense_0": {"kernel": jax.random.normal(k[0], (5, 4)),
                        "bias": jax.random.normal(k[1], (4,))},
            "block": {"conv": {"kernel": jax.random.normal(k[2], (3, 3, 2, 4))},
                      "bn": {"scale": jax.random.normal(k[3], (4,)),
                             "bias": jax.random.normal(k[4], (4,))}}}
    if feedback:
        tree["dense_0"]["feedback_kernel"] = jax.random.normal(k[5], (5, 4))
    return tree


@pytest.mark.parametrize("jit", [False, True])
def test_angle_matches_numpy_arccos(jit):
    a, b = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 3))
    fn = jax.jit(angle) if jit else angle
    np.testing.assert_allclose(fn(a, b), _np_angle(a, b), rtol=1e-5)
    trees = ({"x": a, "y": b[0]}, {"x": b, "y": a[0]})  # flattened and concatenated
    flat = [np.concatenate([np.ravel(t["x"]), np.ravel(t["y"])]) for t in trees]
    np.testing.assert_allclose(fn(*trees), _np_angle(*flat), rtol=1e-5)


def test_angle_extremes_and_zero():
    w = jax.random.normal(jax.random.PRNGKey(1), (64, 32))
    assert float(angle(w, w)) == pytest.approx(0.0, abs=1e-3)
    assert float(angle(w, 3.0 * w)) == pytest.approx(0.0, abs=1e-3)
    assert float(angle(w, -w)) == pytest.approx(180.0, abs=1e-3)
    # near-parallel: Kahan's formula keeps the digits arccos loses in float32
    d = 1e-4 * jax.random.normal(jax.random.PRNGKey(2), w.shape)
    np.testing.assert_allclose(angle(w, w + d), _np_angle(np.asarray(w, np.float64),
                                                          np.asarray(w + d, np.float64)),
                               rtol=1e-2)
    assert np.isnan(float(angle(w, jnp.zeros_like(w))))
    with pytest.raises(ValueError, match="same shapes"):
        angle(w, w.T)


def test_layer_paths_finds_the_kernels():
    assert layer_paths(_tree(jax.random.PRNGKey(0))) == ("dense_0", "block/conv")


def test_gradient_angles_per_layer_and_all():
    true = _tree(jax.random.PRNGKey(3), feedback=False)
    rule = _tree(jax.random.PRNGKey(4))  # carries B's gradient, which is left out
    got = gradient_angles(rule, true)
    d_rule = [rule["dense_0"]["kernel"], rule["dense_0"]["bias"]]
    d_true = [true["dense_0"]["kernel"], true["dense_0"]["bias"]]
    np.testing.assert_allclose(
        got["dense_0"], _np_angle(np.concatenate([np.ravel(x) for x in d_rule]),
                                  np.concatenate([np.ravel(x) for x in d_true])), rtol=1e-5)
    np.testing.assert_allclose(got["block/conv"], _np_angle(rule["block"]["conv"]["kernel"],
                                                            true["block"]["conv"]["kernel"]),
                               rtol=1e-5)
    leaves = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])  # noqa: E731
    rule_fwd = {k: ({kk: vv for kk, vv in v.items() if kk != "feedback_kernel"}
                    if k == "dense_0" else v) for k, v in rule.items()}
    np.testing.assert_allclose(got["all"], _np_angle(leaves(rule_fwd), leaves(true)), rtol=1e-5)
    same = gradient_angles({**true, "dense_0": {**true["dense_0"], "feedback_kernel":
                                                true["dense_0"]["kernel"]}}, true)
    assert all(float(v) == pytest.approx(0.0, abs=1e-3) for v in same.values())
    with pytest.raises(ValueError, match="no layer .block/conv"):
        gradient_angles({"dense_0": true["dense_0"]}, true)


def test_weight_angles_stored_and_derived_feedback():
    params = _tree(jax.random.PRNGKey(5))
    w = params["dense_0"]["kernel"]
    np.testing.assert_allclose(weight_angles(params)["dense_0"],
                               _np_angle(w, params["dense_0"]["feedback_kernel"]), rtol=1e-5)
    mirrored = {**params, "dense_0": {**params["dense_0"], "feedback_kernel": -w}}
    assert float(weight_angles(mirrored)["dense_0"]) == pytest.approx(180.0, abs=1e-3)
    tied = {**params, "dense_0": {**params["dense_0"], "feedback_kernel": w}}
    assert float(weight_angles(tied)["dense_0"]) == pytest.approx(0.0, abs=1e-3)
    # B = sign(W) for every layer (sign symmetry stores no B)
    sign = weight_angles(params, feedback_weights=lambda k, b: jnp.sign(k),
                         layers=layer_paths(params))
    conv = params["block"]["conv"]["kernel"]
    np.testing.assert_allclose(sign["block/conv"], _np_angle(conv, np.sign(conv)), rtol=1e-5)
    with pytest.raises(ValueError, match="stores no"):
        weight_angles(params, layers=("block/conv",))


def test_alignment_metrics_is_a_flat_dict_under_jit():
    params = _tree(jax.random.PRNGKey(6))
    true = _tree(jax.random.PRNGKey(7), feedback=False)
    out = jax.jit(alignment_metrics)(params, true, params)
    assert set(out) == {"align/dense_0/grad_angle", "align/block/conv/grad_angle",
                        "align/all/grad_angle", "align/dense_0/weight_angle"}
    assert all(np.shape(v) == () for v in out.values())
