"""How closely a learning rule's updates and feedback weights follow backprop's.

Two angles per layer, the measurements of the credit-assignment literature:

* the **gradient angle**: between the parameter update a rule computes
  (its "gradient": the layer's own weight and bias gradients given the error
  that reached the layer through the feedback weights B) and the true
  gradient of the same loss at the same parameters (backprop's). Lillicrap,
  Cownden, Tweed & Akerman 2016 ("Random synaptic feedback weights support
  error backpropagation for deep learning", Nat. Commun., Fig. 2: the angle
  between the FA and BP hidden-layer updates); Akrout et al. 2019 ("Deep
  learning without weight transport", NeurIPS, Sec. 5, Fig. 3);
* the **weight angle**: between the forward weights W and the feedback
  weights B (kept in W's layout, so ``B = W`` is backprop). Akrout et al.
  2019 (Fig. 3, "weight alignment"); Kunin, Nayebi, Sagastuy-Brena, Ganguli,
  Bloom & Yamins 2020 ("Two routes to scalable credit assignment without
  weight symmetry", ICML, Sec. 5).

The angle between two arrays (or PyTrees, flattened and concatenated) is

    angle(a, b) = arccos(<a, b> / (||a|| ||b||))                 (degrees)

computed as ``2 atan2(||u - v||, ||u + v||)`` with ``u = a/||a||`` and
``v = b/||b||`` (Kahan's formula: the same angle, accurate near 0 and 180
degrees where arccos loses digits); NaN when either norm is zero.

These functions take gradient and parameter trees, not models: the caller
computes the rule's gradient from the model with the rule, and the true one
from its backprop twin (the same model with ``rule='backprop'``, whose
parameters are the rule's without the feedback entries;
``neurojax.rules.forward_params``). Forward-mode autodiff does not pass
through the rules' ``custom_vjp``: take curvature from the twin as well.
A *layer* is a sub-dictionary of the parameter tree holding a ``kernel``
(dense and conv layers); it is named by its '/'-joined path.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp

KERNEL = "kernel"
FEEDBACK = "feedback_kernel"  # the rules' name of B (neurojax.rules.FEEDBACK_PARAM)


def _flat(tree: Any) -> jax.Array:
    leaves = [jnp.ravel(jnp.asarray(x, jnp.float32)) for x in jax.tree.leaves(tree)]
    if not leaves:
        raise ValueError("angle needs at least one array, got an empty tree")
    return jnp.concatenate(leaves)


def angle(a: Any, b: Any) -> jax.Array:
    """The angle in degrees between two arrays or PyTrees of the same shapes
    (flattened and concatenated in leaf order); NaN if either is zero."""
    sa = [jnp.shape(x) for x in jax.tree.leaves(a)]
    sb = [jnp.shape(x) for x in jax.tree.leaves(b)]
    if sa != sb:
        raise ValueError(f"angle needs arrays of the same shapes, got {sa} and {sb}")
    x, y = _flat(a), _flat(b)
    nx, ny = jnp.linalg.norm(x), jnp.linalg.norm(y)
    ok = (nx > 0) & (ny > 0)
    u = x / jnp.where(ok, nx, 1.0)
    v = y / jnp.where(ok, ny, 1.0)
    rad = 2.0 * jnp.arctan2(jnp.linalg.norm(u - v), jnp.linalg.norm(u + v))
    return jnp.where(ok, jnp.degrees(rad), jnp.nan)


def layer_paths(params: Mapping[str, Any]) -> tuple[str, ...]:
    """'/'-joined paths of the sub-dictionaries of ``params`` that hold a
    ``kernel``, in the tree's order."""
    found: list[str] = []

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if not isinstance(node, Mapping):
            return
        if KERNEL in node and not isinstance(node[KERNEL], Mapping):
            found.append("/".join(path))
        for key, child in node.items():
            walk(child, path + (str(key),))

    walk(params, ())
    return tuple(found)


def _at(tree: Mapping[str, Any], path: str) -> Any:
    node = tree
    for key in path.split("/") if path else ():
        if not isinstance(node, Mapping) or key not in node:
            raise ValueError(f"no layer {path!r} in the tree (missing {key!r})")
        node = node[key]
    return node


def _forward_leaves(layer: Mapping[str, Any], feedback_name: str) -> dict:
    return {k: v for k, v in layer.items() if k != feedback_name}


def gradient_angles(rule_grads: Mapping[str, Any], true_grads: Mapping[str, Any], *,
                    feedback_name: str = FEEDBACK) -> dict[str, jax.Array]:
    """Per layer, the angle between the rule's gradient and the true one.

    Args:
        rule_grads: the gradient under the rule (it may hold ``feedback_name``
            entries, B's updates, which are left out).
        true_grads: backprop's gradient over the forward parameters (the
            twin's tree: ``rule_grads`` without the feedback entries).
        feedback_name: the name of B's entries.

    Returns:
        ``{layer: degrees}`` over each layer's forward parameters (kernel and
        bias together: the layer's update direction), and ``'all'``: over
        every forward parameter (BatchNorm's too).
    """
    out = {}
    for path in layer_paths(true_grads):
        true_layer = _at(true_grads, path)
        rule_layer = _forward_leaves(_at(rule_grads, path), feedback_name)
        if set(rule_layer) != set(true_layer):
            raise ValueError(f"layer {path!r}: the rule's gradient has {sorted(rule_layer)}, "
                             f"the true gradient {sorted(true_layer)}")
        out[path] = angle({k: rule_layer[k] for k in true_layer}, true_layer)
    out["all"] = angle(_matching(rule_grads, true_grads, feedback_name), true_grads)
    return out


def _matching(rule_tree: Any, true_tree: Any, feedback_name: str) -> Any:
    """``rule_tree`` restricted to the keys of ``true_tree``, in its order."""
    if isinstance(true_tree, Mapping):
        if not isinstance(rule_tree, Mapping):
            raise ValueError("the rule's gradient and the true gradient differ in structure")
        missing = sorted(set(true_tree) - set(rule_tree))
        if missing:
            raise ValueError(f"the rule's gradient lacks {missing}")
        return {k: _matching(rule_tree[k], v, feedback_name) for k, v in true_tree.items()}
    return rule_tree


def weight_angles(params: Mapping[str, Any], *,
                  feedback_weights: Optional[Callable[[jax.Array, Optional[jax.Array]],
                                                      jax.Array]] = None,
                  layers: Optional[Sequence[str]] = None,
                  feedback_name: str = FEEDBACK) -> dict[str, jax.Array]:
    """Per layer, the angle between W (``kernel``) and the feedback weights B.

    Args:
        params: the parameters under the rule.
        feedback_weights: ``(kernel, stored B or None) -> B`` the backward
            pass uses (``neurojax.rules.Rule.feedback_weights``; e.g. sign
            symmetry's ``|B_0| sign(W)``); ``None``: the stored B.
        layers: the layers to report; ``None``: those storing B. A layer
            without a stored B needs ``feedback_weights`` (sign symmetry's
            ``s sign(W)``).

    Returns:
        ``{layer: degrees}`` (0 for ``B = W``, 180 for ``B = -W``).
    """
    names = (tuple(p for p in layer_paths(params) if feedback_name in _at(params, p))
             if layers is None else tuple(layers))
    out = {}
    for path in names:
        layer = _at(params, path)
        stored = layer.get(feedback_name)
        if feedback_weights is None and stored is None:
            raise ValueError(f"layer {path!r} stores no {feedback_name!r}: pass "
                             "feedback_weights to compute its B")
        b = stored if feedback_weights is None else feedback_weights(layer[KERNEL], stored)
        out[path] = angle(layer[KERNEL], b)
    return out


def alignment_metrics(rule_grads: Mapping[str, Any], true_grads: Mapping[str, Any],
                      params: Mapping[str, Any], *,
                      feedback_weights: Optional[Callable] = None,
                      layers: Optional[Sequence[str]] = None,
                      feedback_name: str = FEEDBACK,
                      prefix: str = "align") -> dict[str, jax.Array]:
    """:func:`gradient_angles` and :func:`weight_angles` as one flat dict of
    scalars for logging: ``{prefix}/{layer}/grad_angle``,
    ``{prefix}/all/grad_angle`` and ``{prefix}/{layer}/weight_angle``
    (degrees; ``feedback_weights`` and ``layers`` as for :func:`weight_angles`)."""
    out = {f"{prefix}/{path}/grad_angle": value for path, value in
           gradient_angles(rule_grads, true_grads, feedback_name=feedback_name).items()}
    out.update({f"{prefix}/{path}/weight_angle": value for path, value in weight_angles(
        params, feedback_weights=feedback_weights, layers=layers,
        feedback_name=feedback_name).items()})
    return out

