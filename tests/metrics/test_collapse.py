"""Stochastic collapse (Chen et al. 2023): vanishing and identical-neuron sets are
invariant under one SGD / momentum / weight-decay / Adam step of the library's MLP,
exactly (float64, compared to 0 and bitwise); the detector against a brute-force
union-find; the projection against the orthogonality characterisation."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from neurojax.metrics import collapse
from neurojax.models.mlp import MLP
from tests._x64 import float64

VANISH, GROUPS = [1], [[0, 3, 4]]
VANISH2, GROUPS2 = [0], [[2, 5]]


def _setup(activation, dyadic):
    """The library's MLP in float64, projected onto vanishing and identical sets.

    ``dyadic``: inputs, targets and weights are small multiples of powers of two and
    the loss is a sum of squares divided by 64, so every forward/backward product
    and sum is exact in float64 whatever the summation order: a tied pair that came
    out unequal would be a real break of the invariance, not round-off."""
    model = MLP(widths=(6, 7), num_outputs=4, activation=activation)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 5))
    params = jax.tree.map(lambda a: np.asarray(a, np.float64),
                          jax.jit(model.init)(jax.random.PRNGKey(0), x)["params"])
    if dyadic:
        x = rng.integers(-3, 4, (16, 5)).astype(np.float64)
        params = jax.tree.map(lambda a: np.round(8 * a) / 8 + 0.125, params)
    params = collapse.project_to_invariant_set(params, "dense_0", vanishing=VANISH, groups=GROUPS)
    params = collapse.project_to_invariant_set(params, "dense_1", vanishing=VANISH2,
                                               groups=GROUPS2)
    if dyadic:  # the group means (/3) rounded back to eighths: ties and zeros kept
        params = jax.tree.map(lambda a: np.round(8 * np.asarray(a)) / 8, params)
        y = jnp.asarray(rng.integers(-2, 3, (16, 4)).astype(np.float64))

        def loss(p):
            return 0.5 * jnp.sum((model.apply({"params": p}, x) - y) ** 2) / 64
    else:
        labels = jnp.asarray(rng.integers(0, 4, 16))

        def loss(p):
            logits = model.apply({"params": p}, x)
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

    return params, loss


OPTIMIZERS = (optax.sgd(0.5),
              optax.chain(optax.add_decayed_weights(0.0625), optax.sgd(0.5, momentum=0.5)),
              optax.adam(0.125))


def _steps(params, loss, num_steps):
    """Every optimiser of OPTIMIZERS for num_steps steps, in one compiled call."""
    @jax.jit
    def run(p0):
        out = []
        for opt in OPTIMIZERS:
            p, state = p0, opt.init(p0)
            for _ in range(num_steps):
                u, state = opt.update(jax.grad(loss)(p), state, p)
                p = optax.apply_updates(p, u)
            out.append(p)
        return out

    return run(params)


def _check_set(p, ulps=None):
    """Vanishing neurons exactly 0; tied neurons bitwise equal (``ulps=None``) or
    within ``ulps`` float64 units of the layer's largest entry."""
    k0, b0, k1, k2 = (np.asarray(p["dense_0"]["kernel"]), np.asarray(p["dense_0"]["bias"]),
                      np.asarray(p["dense_1"]["kernel"]), np.asarray(p["head"]["kernel"]))
    b1 = np.asarray(p["dense_1"]["bias"])
    for j in VANISH:
        assert not np.any(k0[:, j]) and b0[j] == 0 and not np.any(k1[j])
    for j in VANISH2:
        assert not np.any(k1[:, j]) and b1[j] == 0 and not np.any(k2[j])
    for (w_in, b, w_out), groups in (((k0, b0, k1), GROUPS), ((k1, b1, k2), GROUPS2)):
        for g in groups:
            for a, c in ((w_in[:, g], w_in[:, g[0]][:, None]), (b[g], b[g[0]]),
                         (w_out[g], w_out[g[0]][None])):
                if ulps is None:
                    assert np.array_equal(a, np.broadcast_to(c, a.shape))
                else:
                    tol = ulps * np.finfo(np.float64).eps * max(np.abs(w_in).max(),
                                                                np.abs(w_out).max())
                    assert np.abs(a - c).max() <= tol


def test_invariant_sets_survive_one_step_exactly_in_exact_arithmetic():
    """One step of SGD, SGD with momentum and weight decay, and Adam (Chen et al. 2023,
    Sec. 3): vanishing neurons stay exactly 0 and tied neurons stay bitwise equal."""
    with float64():
        params, loss = _setup("relu", dyadic=True)
        _check_set(params)
        assert float(optax.tree.norm(jax.jit(jax.grad(loss))(params))) > 0
        for p in _steps(params, loss, 1):
            _check_set(p)
            assert not np.array_equal(p["dense_0"]["kernel"], params["dense_0"]["kernel"])


def test_invariant_sets_survive_sgd_in_floating_point():
    """Cross-entropy, tanh, three steps: vanishing neurons stay exactly 0; tied
    neurons agree to a few ulps only. XLA's CPU matmul sums the rows of a
    gradient matrix in different blocks (rows 0 and 4 of h^T delta differ in the
    last bit here), so bitwise equality is a property of exact arithmetic."""
    with float64():
        params, loss = _setup("tanh", dyadic=False)
        for p in _steps(params, loss, 3):
            _check_set(p, ulps=64)


def _union_find_counts(v, rtol):
    """Brute force: vanishing and pairwise-identical by loops, groups by union-find."""
    norms = np.linalg.norm(v, axis=1)
    van = norms <= rtol * norms.max()
    parent = list(range(len(v)))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(v)):
        for j in range(i + 1, len(v)):
            if not van[i] and not van[j] and \
                    np.linalg.norm(v[i] - v[j]) <= rtol * max(norms[i], norms[j]):
                parent[find(j)] = find(i)
    roots = {find(i) for i in range(len(v)) if not van[i]}
    return int(van.sum()), len(roots)


def test_detector_matches_brute_force_with_chains_and_near_duplicates():
    rng = np.random.default_rng(1)
    params = MLP(widths=(9,), num_outputs=2).init(jax.random.PRNGKey(1), jnp.ones((1, 4)))
    p = jax.tree.map(np.array, params["params"])
    k, b, o = p["dense_0"]["kernel"], p["dense_0"]["bias"], p["head"]["kernel"]
    b[:] = rng.standard_normal(9)
    k[:, 2], b[2], o[2] = 0, 0, 0                       # vanishing
    k[:, 7], b[7], o[7] = 1e-6, 0, 1e-6                 # vanishing within rtol
    k[:, 4], b[4], o[4] = k[:, 1], b[1], o[1]           # duplicate of 1
    step = 0.6e-3 * np.linalg.norm(np.r_[k[:, 1], b[1], o[1]])
    k[0, 5], k[1:, 5], b[5], o[5] = k[0, 1] + step, k[1:, 1], b[1], o[1]   # 1 ~ 5
    k[0, 6], k[1:, 6], b[6], o[6] = k[0, 1] + 2 * step, k[1:, 1], b[1], o[1]  # 5 ~ 6, not 1 ~ 6
    report = collapse.collapse_report(p, rtol=1e-3)["dense_0"]
    v = np.concatenate([k.T, b[:, None], o], axis=1)
    num_van, num_indep = _union_find_counts(v, 1e-3)
    assert (int(report["num_vanishing"]), int(report["num_independent"])) == (num_van, num_indep)
    assert (num_van, num_indep) == (2, 9 - 2 - 3)
    assert list(np.asarray(report["group"])[[1, 4, 5, 6, 2]]) == [1, 1, 1, 1, -1]
    jitted = jax.jit(lambda q: collapse.collapse_metrics(q))(p)
    assert int(jitted["collapse/dense_0/independent"]) == num_indep
    np.testing.assert_allclose(float(jitted["collapse/fraction_independent"]), num_indep / 9)


def test_projection_is_orthogonal_and_idempotent():
    with float64():
        model = MLP(widths=(5, 4), num_outputs=2)
        init = lambda s: jax.tree.map(lambda a: a.astype(jnp.float64) + 0.3,  # noqa: E731
                                      model.init(jax.random.PRNGKey(s), jnp.ones((1, 3))))
        proj = lambda t: collapse.project_to_invariant_set(  # noqa: E731
            t, "dense_0", vanishing=[4], groups=[[0, 2], [1, 3]])
        p = init(0)
        pp = proj(p)
        assert set(pp) == {"params"}
        chex_equal = jax.tree.map(lambda a, b: np.array_equal(a, b), proj(pp), pp)
        assert all(jax.tree.leaves(chex_equal))
        q = proj(init(1))  # another point of the set
        flat = lambda t: np.concatenate([np.ravel(a) for a in jax.tree.leaves(t)])  # noqa: E731
        r, d = flat(p) - flat(pp), flat(q) - flat(pp)
        assert abs(r @ d) < 1e-12 * np.linalg.norm(r) * np.linalg.norm(d)
        rep = collapse.collapse_report(pp, rtol=1e-12)["dense_0"]
        assert int(rep["num_vanishing"]) == 1 and int(rep["num_independent"]) == 2


def test_bad_inputs_raise():
    p = MLP(widths=(3,), num_outputs=2).init(jax.random.PRNGKey(0), jnp.ones((1, 2)))
    with pytest.raises(ValueError, match="layer must be a hidden layer"):
        collapse.project_to_invariant_set(p, "head", vanishing=[0])
    with pytest.raises(ValueError, match="distinct neuron indices"):
        collapse.project_to_invariant_set(p, "dense_0", vanishing=[0], groups=[[0, 1]])
    with pytest.raises(ValueError, match="groups must each"):
        collapse.project_to_invariant_set(p, "dense_0", groups=[[1]])
    with pytest.raises(ValueError, match="rtol"):
        collapse.collapse_report(p, rtol=-1.0)
    with pytest.raises(ValueError, match="layer_names"):
        collapse.collapse_report(p, layer_names=["dense_0", "nope"])
    with pytest.raises(ValueError, match="at least two dense layers"):
        collapse.collapse_report({"head": p["params"]["head"]})
