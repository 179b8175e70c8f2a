"""Issue 18's experiment driver (neurojax.analysis.credit_assignment, its runs
and its bias/variance part): statistics against numpy, the transfer regret against a
brute-force loop, the bias/variance decomposition against a quadratic where
Lemma 2.1 is exact, the training run against a plain loop (slow), and the
ImageNet config's schedule."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.analysis import credit_assignment as ca
from neurojax.analysis import credit_assignment_runs as runs
from neurojax.analysis.credit_assignment_bias import estimator_statistics
from neurojax.analysis.credit_assignment_figures import isotropic_excess_loss
from neurojax.metrics.imperfect_gradients import lemma21_excess_loss
from neurojax.rules import RULE_NAMES, rule_metaparameters
from tests._x64 import float64


def test_variants_cover_every_rule_and_both_sign_symmetries():
    assert {v["name"] for v in runs.VARIANTS.values()} == set(RULE_NAMES)
    magnitudes = {runs.variant_rule(k).magnitude for k, v in runs.VARIANTS.items()
                  if v["name"] == "sign_symmetry"}
    assert magnitudes == {"fixed", "random"}
    with pytest.raises(ValueError, match="variant must be one of"):
        runs.variant_rule("nope")


def test_transfer_regret_against_a_brute_force_loop():
    rng = np.random.default_rng(0)
    labels = [f"s{i}" for i in range(6)]
    a = dict(zip(labels, rng.random(6)))
    b = dict(zip(labels, rng.random(6)))
    got = ca.transfer_regret(a, b)
    best_a = best_b = labels[0]
    for k in labels:
        best_a = k if a[k] > a[best_a] else best_a
        best_b = k if b[k] > b[best_b] else best_b
    assert (got["best_a"], got["best_b"]) == (best_a, best_b)
    assert got["a_to_b"] == pytest.approx(b[best_b] - b[best_a])
    assert got["b_to_a"] == pytest.approx(a[best_a] - a[best_b])
    assert got["a_to_b"] >= 0 and got["b_to_a"] >= 0
    with pytest.raises(ValueError, match="same non-empty set"):
        ca.transfer_regret(a, {"s0": 1.0})


@pytest.mark.parametrize("name, decay_key", [("weight_mirror", "alpha"),
                                             ("information_alignment", "gamma")])
def test_transfer_grid_scales_the_defaults(name, decay_key):
    defaults = rule_metaparameters(name)
    grid = ca.transfer_grid(name, rates=(1.0, 10.0), decays=(0.5, 4.0))
    assert len(grid) == 4
    label, coeffs = grid[3]
    assert label == "rate=10,decay=4"
    for k in ("alpha", "beta", "gamma"):
        if k in defaults:
            want = defaults[k] * 10.0 * (4.0 if k == decay_key else 1.0)
            assert coeffs[k] == pytest.approx(want)
    runs.variant_rule(name, **coeffs)  # a valid Rule
    with pytest.raises(ValueError, match="name must be one of"):
        ca.transfer_grid("kolen_pollack")


def _rules_result(accs):
    return {"tasks": {"t": {"rules": {v: {"final": {"test_accuracy": {
        "mean": float(np.mean(a)), "per_seed": list(a)}}} for v, a in accs.items()}}}}


def test_anchors_compare_orderings_pair_by_pair():
    accs = {"backprop": [0.95, 0.96, 0.97], "sign_symmetry": [0.94, 0.95, 0.96],
            "sign_symmetry_random": [0.965, 0.96, 0.96], "feedback_alignment": [0.5, 0.6, 0.7]}
    out = ca.anchors(_rules_result(accs))
    assert out["biotorch_order"] == ["backprop", "uSF", "frSF", "feedback_alignment"]
    task = out["tasks"]["t"]
    assert task["top1_error"]["feedback_alignment"] == pytest.approx(40.0)
    assert task["order"][0] == "frSF" and task["order"][-1] == "feedback_alignment"
    pairs = {(p["better_in_biotorch"], p["worse_in_biotorch"]): p for p in task["pairs"]}
    assert len(pairs) == 6
    bp_usf = pairs[("backprop", "uSF")]   # +0.01 on every seed: same order, resolved
    assert bp_usf["same_order"] and bp_usf["resolved"]
    assert bp_usf["standard_error"] == pytest.approx(0.0, abs=1e-12)
    bp_fr = pairs[("backprop", "frSF")]   # differences -0.015, 0, +0.01: unresolved
    assert not bp_fr["resolved"]
    usf_fr = pairs[("uSF", "frSF")]       # -0.025, -0.01, 0: reversed order
    assert not usf_fr["same_order"]
    diff = np.subtract(accs["sign_symmetry"], accs["sign_symmetry_random"])
    assert usf_fr["standard_error"] == pytest.approx(np.std(diff, ddof=1) / np.sqrt(3))


@pytest.mark.slow  # ~100 s of compilation on 2 loaded cores
def test_estimator_statistics_are_exact_on_a_quadratic():
    """Planted bias d and a zero-sum noise set on L(w) = 1/2 (w-c)^T A (w-c):
    the decomposition recovers them, and Eq. 2 equals Lemma 2.1 term by term.
    """
    with float64():
        rng = np.random.default_rng(1)
        n, r = 5, 6
        m = rng.normal(size=(n, n))
        a = jnp.asarray(m @ m.T + n * np.eye(n))
        c, w = jnp.asarray(rng.normal(size=n)), jnp.asarray(rng.normal(size=n))
        g = a @ (w - c)
        d = jnp.asarray(0.3 * rng.normal(size=n))
        noise = rng.normal(size=(r, n))
        noise = jnp.asarray(noise - noise.mean(0))
        table = g + d + noise                 # the "rule's" gradient on batch i

        def loss(v):
            return 0.5 * (v - c) @ a @ (v - c)

        out = estimator_statistics(table, loss, g + d, w, 0.05)
        gn = np.linalg.norm(np.asarray(g))
        assert out["relative_bias"] == pytest.approx(np.linalg.norm(np.asarray(d)) / gn)
        power = np.mean(np.sum(np.asarray(noise) ** 2, axis=1))
        assert out["relative_noise"] == pytest.approx(np.sqrt(power) / gn)
        cos = np.dot(np.asarray(g + d), np.asarray(g)) / (np.linalg.norm(np.asarray(g + d)) * gn)
        assert out["bias_angle"] == pytest.approx(np.degrees(np.arccos(cos)), abs=1e-6)
        assert out["mean_matches_full_batch"] == pytest.approx(0.0, abs=1e-12)
        # brute force Eq. 2: mean_i L(w - dt g_i) - L(w - dt g)
        dt = 0.05
        brute = np.mean([loss(w - dt * t) for t in table]) - loss(w - dt * g)
        assert out["measured"]["total"] == pytest.approx(float(brute), rel=1e-9)
        pred = out["predicted"]
        assert pred["total"] == pytest.approx(float(brute), rel=1e-9)
        bias_terms = pred["bias_linear"] + pred["bias_quadratic"] + pred["bias_cross"]
        assert out["measured"]["bias_only"] == pytest.approx(bias_terms, rel=1e-9)
        assert out["measured"]["variance_only"] == pytest.approx(pred["variance"], rel=1e-9)
        assert out["trace_over_n"] == pytest.approx(float(jnp.trace(a)) / n)


def test_isotropic_contours_match_lemma21():
    """For H = h I, a bias orthogonal to g and noise of power s^2, Lemma 2.1 is
    the figure's ``1/2 dt^2 (Tr H/N) ||g||^2 (x^2 + y^2)``."""
    n, h, dt = 4, 3.0, 0.1
    g = np.array([2.0, 0.0, 0.0, 0.0])
    beta = np.array([0.0, 1.0, 0.0, 0.0])
    x, y = 0.5, 0.7                              # ||bias|| / ||g||, noise / ||g||
    b = x * np.linalg.norm(g) / math.sqrt(n)
    with jax.disable_jit():  # op by op: cheaper than compiling for a 4-vector
        pred = lemma21_excess_loss(g, dt, hessian=h * np.eye(n), b=b, beta=beta,
                                   sigma=y * np.linalg.norm(g), trace=n * h)
    got = isotropic_excess_loss(x, y, grad_norm=np.linalg.norm(g), trace_over_n=h, dt=dt)
    assert float(got) == pytest.approx(float(pred["total"]), rel=1e-5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="Task.steps"):
        runs.Task("t", "digits", "mlp", (), runs.SGD, steps=10, batch_size=8, records=3)
    with pytest.raises(ValueError, match="Task.dataset"):
        runs.Task("t", "cifar10", "mlp", (), runs.SGD, steps=10, batch_size=8, records=2)
    with pytest.raises(ValueError, match="parts must be"):
        ca.check_parts(["rules", "nope"])
    with pytest.raises(ValueError, match="seeds"):
        runs.train_replicas(runs.digits_mlp(2, 1), runs.variant_rule("backprop"), ())


def test_imagenet_config_schedule_warms_up_then_drops_at_30_60_80():
    from configs import credit_imagenet
    from neurojax.optim.factory import make_schedule
    config = credit_imagenet.get_config("information_alignment")
    assert (config.model.name, config.dataset.batch_size, config.optim.nesterov) == (
        "resnet18", 256, True)
    assert config.optim.weight_decay == 1e-4 and config.optim.momentum == 0.9
    per_epoch = credit_imagenet.TRAIN_EXAMPLES // 256
    sched = make_schedule(config.optim, 90 * per_epoch)
    epochs = np.array([0, 2.5, 5, 29.9, 30.1, 60.1, 80.1])
    got = np.asarray(sched(jnp.asarray((epochs * per_epoch).astype(np.int32))))
    np.testing.assert_allclose(got, [0.0, 0.05, 0.1, 0.1, 0.01, 1e-3, 1e-4], rtol=1e-3,
                               atol=1e-9)


@pytest.mark.slow
def test_train_replicas_matches_a_plain_loop():
    """Backprop through the driver (vmapped seeds, recorded chunks) equals plain
    SGD written out here; FA's head keeps its exact gradient and reports the
    angle between its W and B at initialisation."""
    from neurojax.data.on_device import batch_indices
    from neurojax.models import get_model
    sgd = (("name", "sgd"), ("lr", 0.1), ("momentum", 0.0), ("schedule", "constant"),
           ("warmup_steps", 0), ("weight_decay", 0.0), ("grad_clip_norm", 0.0),
           ("transforms", ()))
    task = runs.Task("tiny", "digits", "mlp", (("widths", (8,)),), sgd, steps=6, batch_size=16,
                   records=2, align_examples=32)
    run = runs.train_replicas(task, runs.variant_rule("backprop"), (0, 1))
    x, y, xt, yt = runs.split_arrays("digits", True)
    model = get_model("mlp", widths=(8,))

    def loss(p, xb, yb):
        logits = model.apply({"params": p}, xb)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(yb)), yb])

    for s in (0, 1):
        k_init, k_data, _ = jax.random.split(jax.random.PRNGKey(s), 3)
        p = model.init(k_init, x[:1])["params"]
        idx = batch_indices(k_data, jnp.arange(6), x.shape[0], 16)
        accs, losses = [], []
        for t in range(6):
            losses.append(float(loss(p, x[idx[t]], y[idx[t]])))
            g = jax.grad(loss)(p, x[idx[t]], y[idx[t]])
            p = jax.tree.map(lambda a, b: a - 0.1 * b, p, g)
            if t % 3 == 2:
                accs.append(float(jnp.mean(jnp.argmax(model.apply({"params": p}, xt), -1) == yt)))
        np.testing.assert_allclose(run["test_accuracy"][s, 1:], accs, atol=1e-6)
        np.testing.assert_allclose(run["train_loss"][s, 1:],
                                   [np.mean(losses[:3]), np.mean(losses[3:])], rtol=1e-4)
    assert np.all(run["grad_angle"]["all"] < 0.05)
    fa = runs.train_replicas(task, runs.variant_rule("feedback_alignment"), (0,))
    np.testing.assert_allclose(fa["grad_angle"]["head"][0, 0], 0.0, atol=0.05)
    assert fa["grad_angle"]["dense_0"][0, 0] > 30.0
    params = get_model("mlp", widths=(8,), rule=runs.variant_rule("feedback_alignment")).init(
        jax.random.split(jax.random.PRNGKey(0), 3)[0], x[:1])["params"]["head"]
    w, b = np.ravel(params["kernel"]), np.ravel(params["feedback_kernel"])
    want = np.degrees(np.arccos(w @ b / np.linalg.norm(w) / np.linalg.norm(b)))
    np.testing.assert_allclose(fa["weight_angle"]["head"][0, 0], want, atol=1e-3)


@pytest.mark.slow
def test_rule_points_on_the_digits_mlp():
    """On the real network: backprop's minibatch mean is the true full-batch
    gradient (no bias); feedback alignment's is biased and its minibatch mean
    equals its own full-batch gradient."""
    from neurojax.analysis.credit_assignment_bias import rule_points
    from tests._x64 import float64
    with float64():
        x, y, _, _ = runs.split_arrays("digits", True)
        x = jnp.asarray(np.asarray(x)[:128], jnp.float64)
        y = jnp.asarray(np.asarray(y)[:128])
        bp = rule_points("backprop", steps=2, x=x, y=y)
        fa = rule_points("feedback_alignment", steps=2, x=x, y=y)
    for where in ("init", "trained"):
        assert bp[where]["relative_bias"] < 1e-10
        assert fa[where]["relative_bias"] > 0.1
        assert fa[where]["mean_matches_full_batch"] < 1e-10
        assert bp[where]["relative_noise"] > 0


def _fake_results():
    """Each part's result with the driver's structure (after a JSON round trip:
    lists, NaN as None), from made-up numbers."""
    s = lambda m: {"mean": m, "std": 0.01, "per_seed": [m - 0.01, m, m + 0.01]}
    rules_rows = {v: {
        "final": {"test_accuracy": s(0.9), "grad_angle": {"dense_0": s(40.0), "head": s(0.0),
                                                          "all": s(20.0)},
                  "weight_angle": {} if v == "backprop" else {"dense_0": s(80.0),
                                                              "head": s(70.0)}},
        "curves": {"step": [0, 10], "test_accuracy": [0.1, 0.9], "train_loss": [None, 0.3],
                   "grad_angle": {"dense_0": [None, 40.0]}, "weight_angle": {}}}
        for v in runs.VARIANTS}
    rules_result = {"seeds": [0, 1, 2], "tasks": {"digits_mlp": {"rules": rules_rows}}}
    depth = {"depths": [1, 3], "rules": {r: {str(d): {"test_accuracy": s(0.5),
                                                      "gap_to_backprop": s(0.1 * d)}
                                             for d in (1, 3)} for r in ca.DEPTH_RULES}}
    grid = [label for label, _ in ca.transfer_grid("weight_mirror")]
    transfer = {"rates": list(ca.TRANSFER_RATES), "decays": list(ca.TRANSFER_DECAYS),
                "architectures": {"A": {"model_kwargs": {"widths": [8, 8]}},
                                  "B": {"model_kwargs": {"widths": [8] * 4}}},
                "rules": {n: {"cells": {a: {k: {"test_accuracy": s(0.1 * i)}
                                            for i, k in enumerate(grid)} for a in "AB"},
                              "regret": ca.transfer_regret(dict.fromkeys(grid, 0.0) | {grid[0]: 1.0},
                                                           dict.fromkeys(grid, 0.0) | {grid[-1]: 1.0})}
                          for n in ca.TRANSFER_RULES}}
    point = {"relative_bias": 0.5, "relative_noise": 1.0, "grad_norm": 1.0,
             "trace_over_n": 0.1, "predicted": {"total": 1e-3}, "measured": {"total": 1.1e-3}}
    bias = {"dt": 0.05, "points": {v: {"init": point, "trained": point} for v in runs.VARIANTS}}
    return {"rules": rules_result, "depth": depth, "transfer": transfer,
            "bias_variance": bias}


@pytest.mark.slow  # ~60 s of matplotlib on 2 loaded cores
def test_every_part_draws_its_figure(tmp_path):
    for part, result in _fake_results().items():
        path = ca.plot_part(part, result, str(tmp_path))
        assert path.endswith(f"credit_{part}.png") and (tmp_path / f"credit_{part}.png").stat().st_size > 0
    assert ca.plot_part("anchors", {}, str(tmp_path)) is None


def test_merge_rules_joins_variants_and_pairs_them_with_backprop():
    def row(accs):
        return {"final": {"test_accuracy": runs.spread(accs)}}
    task = {"name": "t"}
    a = {"seeds": [0, 1], "tasks": {"t": {"task": task, "rules": {
        "feedback_alignment": row([0.7, 0.9])}}}}
    b = {"seeds": [0, 1], "tasks": {"t": {"task": task, "rules": {"backprop": row([0.8, 0.95])}},
                                    "u": {"task": task, "rules": {"backprop": row([0.5, 0.5])}}}}
    merged = ca.merge_rules([a, b])
    assert list(merged["tasks"]["t"]["rules"]) == ["backprop", "feedback_alignment"]
    diff = merged["tasks"]["t"]["rules"]["feedback_alignment"]["accuracy_minus_backprop"]
    assert diff["per_seed"] == pytest.approx([-0.1, -0.05])
    assert merged["tasks"]["u"]["rules"]["backprop"]["accuracy_minus_backprop"]["mean"] == 0
    assert "accuracy_minus_backprop" not in a["tasks"]["t"]["rules"]["feedback_alignment"]
    with pytest.raises(ValueError, match="repeat a variant"):
        ca.merge_rules([a, a])
    with pytest.raises(ValueError, match="seeds"):
        ca.merge_rules([a, {"seeds": [0], "tasks": {}}])
    with pytest.raises(ValueError, match="variants must name"):
        ca.part_rules(variants=("nope",))


def test_merge_transfer_joins_architectures_then_scores_the_transfer():
    def share(name, arch, accs):
        return {"seeds": [0, 1], "rates": [1.0], "decays": [1.0, 4.0], "architectures": {},
                "rules": {name: {"cells": {arch: {k: {"test_accuracy": {"mean": v}}
                                                  for k, v in accs.items()}}}}}
    parts = [share(n, arch, {"s1": a1, "s2": a2})
             for n, arch, a1, a2 in [("weight_mirror", "A", 0.9, 0.5), ("weight_mirror", "B", 0.2, 0.8),
                                     ("information_alignment", "A", 0.9, 0.8),
                                     ("information_alignment", "B", 0.85, 0.9)]]
    partial = ca.merge_transfer(parts[:3])
    assert "summary" not in partial and "regret" not in partial["rules"]["information_alignment"]
    merged = ca.merge_transfer(parts)
    assert merged["rules"]["weight_mirror"]["regret"]["a_to_b"] == pytest.approx(0.6)
    assert merged["summary"]["total_regret"]["weight_mirror"] == pytest.approx(1.0)
    assert merged["summary"]["total_regret"]["information_alignment"] == pytest.approx(0.15)
    assert merged["summary"]["information_alignment_transfers_better"]
    with pytest.raises(ValueError, match="repeat an architecture"):
        ca.merge_transfer([parts[0], parts[0]])
    with pytest.raises(ValueError, match="archs must be"):
        ca.part_transfer(archs=("C",))
