"""Probes against independent computations: scikit-learn's Ridge/RidgeClassifier
and LogisticRegression, a NumPy Adam written here, and a brute-force NumPy kNN."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, RidgeClassifier

from neurojax.metrics.probes import (DEFAULT_RIDGE_REGULARIZERS, LinearProbeResult,
                                     RidgeProbeResult, knn_probe, linear_probe, ridge_probe,
                                     time_to_accuracy)


def blobs(n, d, c, *, seed=0, spread=1.0, scales=None, counts=None):
    """Gaussian classes around random means; optional per-feature scales/offsets."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(c, d)) * 2.0
    y = (np.repeat(np.arange(c), counts) if counts is not None
         else rng.integers(0, c, size=n))
    rng.shuffle(y)
    x = means[y] + spread * rng.normal(size=(len(y), d))
    if scales is not None:
        x = x * scales + 3.0
    return x.astype(np.float32), y.astype(np.int32)


# --- ridge -------------------------------------------------------------------------

def zscore(fit, *others):
    mu, sd = fit.mean(0), fit.std(0)
    return [(a - mu) / sd for a in (fit,) + others], mu, sd


def sk_ridge(x_fit, y_fit, lam):
    """sklearn's convention: ||T - XW - b||^2 + alpha ||W||^2, alpha = n * lambda."""
    return RidgeClassifier(alpha=len(x_fit) * lam, fit_intercept=True).fit(
        np.asarray(x_fit, np.float64), y_fit)


def test_ridge_matches_sklearn_for_every_regularizer():
    scales = np.array([1.0, 10.0, 0.1, 3.0, 0.5, 30.0])
    x, y = blobs(180, 6, 3, seed=1, spread=2.0, scales=scales)
    tx, ty, vx, vy, ex, ey = x[:90], y[:90], x[90:120], y[90:120], x[120:], y[120:]
    res = ridge_probe(tx, ty, ex, ey, val_data=(vx, vy))
    assert isinstance(res, RidgeProbeResult)
    lams = np.array(DEFAULT_RIDGE_REGULARIZERS)
    chex.assert_shape([res.val_accuracy, res.test_accuracy_per_regularizer], (len(lams),))
    chex.assert_shape(res.kernel, (6, 3))
    chex.assert_shape([res.bias], (3,))
    np.testing.assert_allclose(res.regularizers, lams, rtol=1e-6)

    # Selection: fit on train_x (its own z-scores), score on val.
    (txs, vxs), _, _ = zscore(tx.astype(np.float64), vx)
    val_ref = np.array([np.mean(sk_ridge(txs, ty, lam).predict(vxs) == vy) for lam in lams])
    np.testing.assert_allclose(res.val_accuracy, val_ref, atol=1e-6)
    assert len(set(val_ref)) > 1            # the grid matters on this problem
    best = len(lams) - 1 - int(np.argmax(val_ref[::-1]))
    np.testing.assert_allclose(res.regularizer, lams[best], rtol=1e-6)

    # Refit on train + val with their z-scores; every lambda scored on test.
    ax, ay = np.concatenate([tx, vx]).astype(np.float64), np.concatenate([ty, vy])
    (axs, exs), mu, sd = zscore(ax, ex)
    models = [sk_ridge(axs, ay, lam) for lam in lams]
    test_ref = np.array([np.mean(m.predict(exs) == ey) for m in models])
    np.testing.assert_allclose(res.test_accuracy_per_regularizer, test_ref, atol=1e-6)
    np.testing.assert_allclose(res.test_accuracy, test_ref[best], atol=1e-6)
    np.testing.assert_allclose(res.train_accuracy,
                               np.mean(models[best].predict(axs) == ay), atol=1e-6)
    # Weights on the raw features: x @ kernel + bias = ((x - mu) / sd) @ coef^T + intercept.
    coef, icpt = models[best].coef_.T, models[best].intercept_
    np.testing.assert_allclose(res.kernel, coef / sd[:, None], rtol=2e-3, atol=1e-5)
    np.testing.assert_allclose(res.bias, icpt - (mu / sd) @ coef, rtol=2e-3, atol=1e-4)


@pytest.mark.parametrize("method,standardize,refit", [("gram", True, True),
                                                      ("covariance", False, False)])
def test_ridge_wide_features_match_sklearn(method, standardize, refit):
    # D > n: 'gram' is what 'auto' picks; 'covariance' must give the same fit.
    x, y = blobs(70, 40, 3, seed=2, spread=3.0)
    tx, ty, vx, vy, ex, ey = x[:24], y[:24], x[24:36], y[24:36], x[36:], y[36:]
    lams = (1e-2, 1e-1, 1.0, 10.0)
    res = ridge_probe(tx, ty, ex, ey, val_data=(vx, vy), regularizers=lams, method=method,
                      standardize=standardize, refit=refit)
    prep = zscore if standardize else (lambda f, *o: ([f - f.mean(0)] + [a - f.mean(0)
                                                                        for a in o], None, None))
    (txs, vxs), _, _ = prep(tx.astype(np.float64), vx)
    val_ref = [np.mean(sk_ridge(txs, ty, lam).predict(vxs) == vy) for lam in lams]
    np.testing.assert_allclose(res.val_accuracy, val_ref, atol=1e-6)
    fx, fy = ((np.concatenate([tx, vx]), np.concatenate([ty, vy])) if refit else (tx, ty))
    (fxs, exs), _, _ = prep(fx.astype(np.float64), ex)
    test_ref = [np.mean(sk_ridge(fxs, fy, lam).predict(exs) == ey) for lam in lams]
    np.testing.assert_allclose(res.test_accuracy_per_regularizer, test_ref, atol=1e-6)
    # Scores on the raw features equal sklearn's decision function at the chosen lambda.
    model = sk_ridge(fxs, fy, float(res.regularizer))
    np.testing.assert_allclose(ex @ np.asarray(res.kernel, np.float64) + res.bias,
                               model.decision_function(exs), rtol=1e-3, atol=1e-3)


def test_ridge_selection_is_the_held_out_argmax():
    # Class 0 is the majority of the fitting set. lambda = 1e6 shrinks W to ~0,
    # so it predicts the majority class everywhere; lambda = 1e-3 separates.
    x, y = blobs(90, 5, 3, seed=3, spread=0.3, counts=[40, 25, 25])
    ex, ey = blobs(30, 5, 3, seed=3, spread=0.3, counts=[10, 10, 10])
    lams = (1e-3, 1e6)
    run = functools.partial(ridge_probe, x, y, ex, ey, regularizers=lams, num_classes=3)
    # Honest held-out labels: the small regulariser wins.
    res = run(val_data=(ex[:10], ey[:10]))
    assert float(res.val_accuracy[0]) == 1.0 and float(res.val_accuracy[1]) < 0.5
    assert float(res.regularizer) == pytest.approx(1e-3)
    assert float(res.test_accuracy) == 1.0
    # Held-out points of classes 1, 2 all labelled 0: only the huge one scores.
    other = ex[ey > 0]
    res = run(val_data=(other[:10], np.zeros(10, np.int32)))
    np.testing.assert_allclose(res.val_accuracy, [0.0, 1.0])
    assert float(res.regularizer) == pytest.approx(1e6)
    # A tie (class-0 points labelled 0: both right): the larger lambda.
    zero = ex[ey == 0]
    res = run(val_data=(zero, np.zeros(10, np.int32)))
    np.testing.assert_allclose(res.val_accuracy, [1.0, 1.0])
    assert float(res.regularizer) == pytest.approx(1e6)


def test_ridge_random_split_and_vmap_over_seeds():
    # The shapes of the sklearn test above (90 fitted / 30 held-out rows of
    # 120, 60 test rows): the compiled program is reused.
    scales = np.array([1.0, 10.0, 0.1, 3.0, 0.5, 30.0])
    x, y = blobs(180, 6, 3, seed=4, spread=2.0, scales=scales)
    tx, ty, ex, ey = x[:120], y[:120], x[120:], y[120:]
    run = functools.partial(ridge_probe, tx, ty, ex, ey, num_classes=3, val_fraction=0.25)
    res = run(seed=0)
    # 30 held-out rows: accuracies are multiples of 1/30.
    np.testing.assert_allclose(res.val_accuracy * 30, np.round(res.val_accuracy * 30),
                               atol=1e-4)
    # The refit uses all 120 training rows, whatever the split.
    (txs, exs), _, _ = zscore(tx.astype(np.float64), ex)
    test_ref = [np.mean(sk_ridge(txs, ty, lam).predict(exs) == ey)
                for lam in DEFAULT_RIDGE_REGULARIZERS]
    np.testing.assert_allclose(res.test_accuracy_per_regularizer, test_ref, atol=1e-6)
    # Deterministic per seed; vmap over keys equals a loop of eager calls.
    np.testing.assert_array_equal(run(seed=0).val_accuracy, res.val_accuracy)
    keys = jax.random.split(jax.random.key(7), 3)
    batched = jax.vmap(lambda k: run(seed=k))(keys)
    for i, k in enumerate(keys):
        single = run(seed=k)
        np.testing.assert_allclose(batched.val_accuracy[i], single.val_accuracy)
        np.testing.assert_allclose(batched.regularizer[i], single.regularizer)
        np.testing.assert_allclose(batched.test_accuracy[i], single.test_accuracy)


# --- trained linear probe ---------------------------------------------------------

def numpy_probe(x, y, c, *, epochs, batch, lr, wd, ls, drop_last, b1=0.9, b2=0.999, eps=1e-8):
    """Minibatch Adam (PyTorch coupled weight decay) on label-smoothed
    cross-entropy, data in order, from zero weights; float64."""
    x = np.asarray(x, np.float64)
    n, d = x.shape
    params = [np.zeros((d, c)), np.zeros(c)]
    mom = [np.zeros_like(p) for p in params]
    vel = [np.zeros_like(p) for p in params]
    q_all = (1 - ls) * np.eye(c)[y] + ls / c
    t, losses = 0, []
    for _ in range(epochs):
        total, count = 0.0, 0
        for start in range(0, n, batch):
            rows = np.arange(start, min(start + batch, n))
            if drop_last and len(rows) < batch:
                continue
            z = x[rows] @ params[0] + params[1]
            z = z - z.max(1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(1, keepdims=True))
            q = q_all[rows]
            total += -(q * logp).sum()
            count += len(rows)
            g = (np.exp(logp) - q) / len(rows)            # d loss / d logits
            grads = [x[rows].T @ g + wd * params[0], g.sum(0) + wd * params[1]]
            t += 1
            for i, gi in enumerate(grads):
                mom[i] = b1 * mom[i] + (1 - b1) * gi
                vel[i] = b2 * vel[i] + (1 - b2) * gi ** 2
                mhat, vhat = mom[i] / (1 - b1 ** t), vel[i] / (1 - b2 ** t)
                params[i] = params[i] - lr * mhat / (np.sqrt(vhat) + eps)
        losses.append(total / count)
    return params, np.array(losses)


@pytest.mark.parametrize("batch,shuffle,drop_last,progress", [
    (4, False, False, False), (4, False, True, True), (10, True, False, False)])
def test_linear_probe_matches_numpy_adam(batch, shuffle, drop_last, progress):
    # 10 rows in batches of 4: steps of 4, 4, 2 (or 4, 4 with drop_last).
    # Full batch (10) with shuffling: the order cannot matter. The
    # progress-bar loop (one compiled epoch per call) must agree too.
    x, y = blobs(22, 4, 3, seed=5, spread=1.5)
    x, y, ex, ey = x[:10], y[:10], x[10:], y[10:]
    hyper = dict(epochs=3, lr=0.05, wd=0.1, ls=0.1)
    res = linear_probe(x, y, ex, ey, num_classes=3, epochs=3, batch_size=batch,
                       learning_rate=0.05, weight_decay=0.1, label_smoothing=0.1,
                       shuffle=shuffle, drop_last=drop_last, init="zeros", seed=0,
                       progress=progress)
    assert isinstance(res, LinearProbeResult)
    (w, b), losses = numpy_probe(x, y, 3, batch=batch, drop_last=drop_last, **hyper)
    np.testing.assert_allclose(res.kernel, w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(res.bias, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(res.loss_curve, losses, rtol=1e-5)
    np.testing.assert_allclose(res.final_loss, losses[-1], rtol=1e-5)
    acc = lambda xx, yy: np.mean(np.argmax(xx @ w + b, 1) == yy)
    np.testing.assert_allclose(res.test_accuracy, acc(ex, ey))
    np.testing.assert_allclose(res.train_accuracy, acc(x, y))
    chex.assert_shape([res.loss_curve, res.test_accuracy_curve], (3,))
    chex.assert_shape(res.kernel, (4, 3))
    np.testing.assert_allclose(res.best_test_accuracy, np.max(res.test_accuracy_curve))


def probe_task():
    x, y = blobs(300, 10, 4, seed=7, spread=1.8)
    return x[:200], y[:200], x[200:], y[200:]


# One compiled program for the tests below: these shapes and settings, with
# the (traced) learning rate varied.
run_probe = functools.partial(linear_probe, num_classes=4, epochs=30, batch_size=32, seed=1)


def test_linear_probe_reaches_logistic_regression_accuracy():
    tx, ty, ex, ey = probe_task()
    ref = LogisticRegression(max_iter=2000).fit(tx, ty).score(ex, ey)
    res = run_probe(tx, ty, ex, ey, learning_rate=1e-2)
    assert float(res.test_accuracy) >= ref - 0.03, (float(res.test_accuracy), ref)
    assert float(res.train_accuracy) >= 0.9
    assert float(res.loss_curve[-1]) < float(res.loss_curve[0])


def test_linear_probe_torch_init_and_vmap_over_learning_rates():
    tx, ty, ex, ey = probe_task()
    # nn.Linear's init: U(-1/sqrt(D), 1/sqrt(D)); a vanishing rate keeps it.
    init = run_probe(tx, ty, ex, ey, learning_rate=1e-30, weight_decay=0.0)
    bound = 1 / np.sqrt(10)
    kernel = np.asarray(init.kernel)
    assert np.all(np.abs(kernel) <= bound) and np.all(np.abs(init.bias) <= bound)
    assert np.std(kernel) > 0.3 * bound
    # vmap over learning rates (traced hyperparameters) equals separate runs.
    lrs = [1e-3, 1e-2]
    swept = jax.vmap(lambda lr: run_probe(tx, ty, ex, ey, learning_rate=lr))(jnp.array(lrs))
    for i, lr in enumerate(lrs):
        single = run_probe(tx, ty, ex, ey, learning_rate=lr)
        np.testing.assert_allclose(swept.loss_curve[i], single.loss_curve, rtol=1e-5)
        np.testing.assert_allclose(swept.test_accuracy[i], single.test_accuracy)
    assert not np.allclose(swept.loss_curve[0], swept.loss_curve[1])


def test_linear_probe_standardize_is_affine_invariant():
    # z-scoring with the training statistics (BatchNorm without affine, eval
    # mode) makes training invariant to per-feature scales and offsets; the
    # returned kernel/bias act on the raw features.
    tx, ty, ex, ey = probe_task()
    scale = np.geomspace(0.02, 50.0, 10).astype(np.float32)
    shift = 7.0
    a = run_probe(tx, ty, ex, ey, learning_rate=1e-2, standardize=True)
    b = run_probe(tx * scale + shift, ty, ex * scale + shift, ey, learning_rate=1e-2,
                  standardize=True)
    np.testing.assert_allclose(a.loss_curve, b.loss_curve, rtol=1e-4)
    np.testing.assert_allclose(a.test_accuracy_curve, b.test_accuracy_curve)
    np.testing.assert_allclose(b.kernel * scale[:, None], a.kernel, rtol=1e-3, atol=1e-5)
    logits = (ex * scale + shift) @ np.asarray(b.kernel, np.float64) + np.asarray(b.bias)
    np.testing.assert_allclose(np.mean(np.argmax(logits, 1) == ey), b.test_accuracy)
    plain = run_probe(tx * scale + shift, ty, ex * scale + shift, ey, learning_rate=1e-2)
    assert not np.allclose(plain.loss_curve, b.loss_curve, rtol=1e-2)


# --- kNN ---------------------------------------------------------------------------

def numpy_knn(tx, ty, ex, ey, c, k, temperature, weighting, metric="cosine"):
    """Loop over test points: cosine similarity (or minus the squared
    Euclidean distance), stable ranking, weighted vote."""
    tx = np.asarray(tx, np.float64)
    ex = np.asarray(ex, np.float64)
    if metric == "cosine":
        tx = tx / np.maximum(np.linalg.norm(tx, axis=1, keepdims=True), 1e-12)
        ex = ex / np.maximum(np.linalg.norm(ex, axis=1, keepdims=True), 1e-12)
    correct = 0
    for q, label in zip(ex, ey):
        sims = tx @ q if metric == "cosine" else -np.sum((tx - q) ** 2, axis=1)
        nn = np.argsort(-sims, kind="stable")[:k]
        votes = np.zeros(c)
        for j in nn:
            votes[ty[j]] += (np.exp((sims[j] - sims[nn[0]]) / temperature)
                             if weighting == "exponential" else 1.0)
        correct += int(np.argmax(votes) == label)
    return correct / len(ey)


@pytest.mark.parametrize("k,temperature,weighting,chunk", [
    (1, 0.1, "exponential", 7), (5, 0.1, "uniform", 64), (15, 0.05, "exponential", 13),
    (15, 0.01, "exponential", 13)])
def test_knn_matches_bruteforce(k, temperature, weighting, chunk):
    x, y = blobs(150, 12, 5, seed=10, spread=3.0)
    tx, ty, ex, ey = x[:100], y[:100], x[100:], y[100:]
    acc = knn_probe(tx, ty, ex, ey, k=k, temperature=temperature, weighting=weighting,
                    chunk_size=chunk)
    ref = numpy_knn(tx, ty, ex, ey, 5, k, temperature, weighting)
    assert 0.2 < ref < 1.0                      # neither trivial nor chance
    assert float(acc) == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("k", [1, 10])
def test_euclidean_knn_matches_sklearn_and_bruteforce(k):
    """metric='euclidean' with uniform votes is scikit-learn's
    KNeighborsClassifier; with exponential weights, the brute-force loop."""
    from sklearn.neighbors import KNeighborsClassifier
    x, y = blobs(300, 20, 4, seed=12, spread=4.0)
    x = x + 3.0 * np.random.default_rng(12).standard_normal((1, 20)).astype(np.float32)
    tx, ty, ex, ey = x[:200], y[:200], x[200:], y[200:]
    acc = knn_probe(tx, ty, ex, ey, k=k, weighting="uniform", metric="euclidean",
                    chunk_size=32)
    clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(tx, ty)
    ref = clf.score(ex, ey)
    assert 0.3 < ref < 1.0                      # neither trivial nor chance
    assert float(acc) == pytest.approx(ref, abs=1e-6)       # one test point is 0.01
    weighted = knn_probe(tx, ty, ex, ey, k=k, temperature=2.0, metric="euclidean")
    assert float(weighted) == pytest.approx(
        numpy_knn(tx, ty, ex, ey, 4, k, 2.0, "exponential", metric="euclidean"), abs=1e-6)
    # the two metrics rank differently here (off-centre blobs)
    assert float(knn_probe(tx, ty, ex, ey, k=k, weighting="uniform")) != pytest.approx(ref)


def test_knn_ties_are_deterministic():
    # Training rows 0 and 1 are identical with labels 2 and 1; row 2 is far.
    tx = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    ty = np.array([2, 1, 0], np.int32)
    ex = np.array([[2.0, 0.0]], np.float32)
    # Equal votes for classes 1 and 2: the lower class index wins.
    assert float(knn_probe(tx, ty, ex, np.array([1]), k=2, num_classes=3)) == 1.0
    # k = 1 among equal similarities: the lower training index (label 2).
    assert float(knn_probe(tx, ty, ex, np.array([2]), k=1, num_classes=3)) == 1.0
    assert numpy_knn(tx, ty, ex, [2], 3, 1, 0.1, "exponential") == 1.0


def test_knn_under_jit():
    x, y = blobs(60, 5, 3, seed=11, spread=2.0)
    f = functools.partial(knn_probe, k=5, num_classes=3, chunk_size=8)
    eager = f(x[:40], y[:40], x[40:], y[40:])
    np.testing.assert_allclose(jax.jit(f)(x[:40], y[:40], x[40:], y[40:]), eager)
    assert float(eager) == pytest.approx(numpy_knn(x[:40], y[:40], x[40:], y[40:], 3, 5, 0.1,
                                                   "exponential"))


# --- time to accuracy -------------------------------------------------------------

def test_time_to_accuracy():
    times = [10.0, 20.0, 30.0, 40.0]
    accs = [0.5, float("nan"), 0.81, 0.79]
    assert time_to_accuracy(times, accs, 0.8) == 30.0
    assert time_to_accuracy(times, accs, 0.5) == 10.0
    assert time_to_accuracy(times, accs, 0.9) is None
    assert time_to_accuracy(np.array([]), np.array([]), 0.1) is None


# --- input validation ----------------------------------------------------------------

X = np.zeros((8, 3), np.float32)
Y = np.array([0, 1] * 4, np.int32)


@pytest.mark.parametrize("call,match", [
    (lambda: ridge_probe(X[0], Y, X, Y), "train_x"),
    (lambda: ridge_probe(X, Y, np.zeros((8, 4)), Y), "train_x and test_x"),
    (lambda: ridge_probe(X, Y[:5], X, Y), "train_y"),
    (lambda: ridge_probe(X, Y.astype(np.float32), X, Y), "train_y"),
    (lambda: ridge_probe(X, Y, X, Y + 1, num_classes=2), "test_y"),
    (lambda: ridge_probe(X, -Y, X, Y), "train_y"),
    (lambda: ridge_probe(X, Y, X, Y, num_classes=1), "num_classes"),
    (lambda: ridge_probe(X, Y, X, Y, regularizers=(1.0, 0.0)), "regularizers"),
    (lambda: ridge_probe(X, Y, X, Y, regularizers=()), "regularizers"),
    (lambda: ridge_probe(X, Y, X, Y, val_fraction=1.0), "val_fraction"),
    (lambda: ridge_probe(X, Y, X, Y, val_fraction=0.01), "val_fraction"),
    (lambda: ridge_probe(X, Y, X, Y, val_data=(X,)), "val_data"),
    (lambda: ridge_probe(X, Y, X, Y, val_data=(X[:, :2], Y)), "val_x"),
    (lambda: ridge_probe(X, Y, X, Y, val_data=(X, Y + 5), num_classes=2), "val_y"),
    (lambda: ridge_probe(X, Y, X, Y, method="svd"), "method"),
    (lambda: ridge_probe(X, Y, X, Y, seed="a"), "seed"),
    (lambda: linear_probe(X, Y, X, Y, epochs=0), "epochs"),
    (lambda: linear_probe(X, Y, X, Y, batch_size=0), "batch_size"),
    (lambda: linear_probe(X, Y, X, Y, batch_size=16, drop_last=True), "batch_size"),
    (lambda: linear_probe(X, Y, X, Y, learning_rate=0.0), "learning_rate"),
    (lambda: linear_probe(X, Y, X, Y, weight_decay=-1.0), "weight_decay"),
    (lambda: linear_probe(X, Y, X, Y, label_smoothing=1.0), "label_smoothing"),
    (lambda: linear_probe(X, Y, X, Y, init="normal"), "init"),
    (lambda: knn_probe(X, Y, X, Y, k=9), "k must be <="),
    (lambda: knn_probe(X, Y, X, Y, k=0), "k must be"),
    (lambda: knn_probe(X, Y, X, Y, k=2, temperature=0.0), "temperature"),
    (lambda: knn_probe(X, Y, X, Y, k=2, weighting="linear"), "weighting"),
    (lambda: knn_probe(X, Y, X, Y, k=2, metric="manhattan"), "metric"),
    (lambda: knn_probe(X, Y, X, Y, k=2, chunk_size=0), "chunk_size"),
    (lambda: time_to_accuracy([1.0, 2.0], [0.5], 0.5), "accuracies"),
    (lambda: time_to_accuracy([[1.0]], [[0.5]], 0.5), "times"),
    (lambda: time_to_accuracy([1.0], [0.5], float("nan")), "threshold"),
])
def test_invalid_inputs_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_traced_labels_need_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        jax.jit(lambda a, b: knn_probe(a, b, a, b, k=2))(X, Y)
