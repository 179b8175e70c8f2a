"""Model selection with alpha (alpha-ReQ Algorithm 1; App. B.5, Algorithm 2).

Agrawal, Mondal, Ghosh & Richards, "alpha-ReQ: Assessing representation
quality by measuring eigenspectrum decay" (NeurIPS 2022), Sec. 3.2 and
App. B.5-B.6: train M models at a time, measure alpha of each
(``neurojax.metrics.spectrum.alpha``), and run the expensive linear probe only
on those whose alpha lies in a window that the probed models narrow. The
probe is any ``probe_fn(features, labels) -> performance``; the default,
``ridge_probe_accuracy``, is ``neurojax.metrics.probes.ridge_probe`` on a
random train/test split of the features. ``selection_over_orders`` runs
Algorithm 1 over many orders of a pool whose probe results are known,
against random search with as many probes (``random_search_best``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Optional

import jax
import numpy as np
from tqdm.auto import tqdm

from neurojax._checks import check_int
from neurojax.metrics.probes import ridge_probe
from neurojax.metrics.spectrum import DEFAULT_FIT_RANGE
from neurojax.metrics.spectrum import alpha as fit_alpha

WINDOW_RULES = ("fastssl", "bracket")


def ridge_probe_accuracy(features: Any, labels: Any, *, test_fraction: float = 0.25,
                         seed: int = 0, **ridge_kwargs) -> float:
    """Held-out accuracy of ``neurojax.metrics.probes.ridge_probe`` on one feature set.

    The rows are split at random (``seed``): ``test_fraction`` of them are the
    test set, the rest train the probe (which selects its regulariser on a
    further held-out part of them, see ``ridge_probe``). The default probe of
    ``select_models``; ``ridge_kwargs`` go to ``ridge_probe``.
    """
    f = np.asarray(features)
    f = f.reshape(f.shape[0], -1) if f.ndim > 1 else f
    if f.ndim != 2 or f.shape[0] < 4:
        raise ValueError(f"features must have shape (n >= 4, ...), got {np.shape(features)}")
    if labels is None:
        raise ValueError("labels must be given for the default ridge probe "
                         "(or pass a probe_fn that works without labels)")
    y = np.asarray(labels)
    if y.shape != (f.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids of shape ({f.shape[0]},), got "
                         f"{y.dtype} {y.shape}")
    if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    n = f.shape[0]
    n_test = max(1, int(round(test_fraction * n)))
    if n - n_test < 3:
        raise ValueError(f"test_fraction={test_fraction} leaves {n - n_test} training "
                         f"examples of {n}; the probe needs at least 3")
    perm = np.random.default_rng(seed).permutation(n)
    tr, te = perm[n_test:], perm[:n_test]
    _, y_idx = np.unique(y, return_inverse=True)
    result = ridge_probe(f[tr], y_idx[tr], f[te], y_idx[te],
                         num_classes=int(y_idx.max()) + 1, seed=seed, **ridge_kwargs)
    return float(result.test_accuracy)


def _update_window(alphas: np.ndarray, perfs: np.ndarray, lo: float, hi: float, rule: str,
                   window_top_k: int) -> tuple[float, float]:
    """New [alpha_min, alpha_max] from every probed (alpha, performance) pair."""
    if rule == "bracket":
        # alpha_min = max{alpha_j : some m has alpha_m > alpha_j and perf_m > perf_j}
        # alpha_max = min{alpha_j : some m has alpha_m < alpha_j and perf_m > perf_j}
        better = perfs[:, None] > perfs[None, :]            # [m, j]: m beats j
        right = better & (alphas[:, None] > alphas[None, :])
        left = better & (alphas[:, None] < alphas[None, :])
        beaten_from_right = right.any(axis=0)
        beaten_from_left = left.any(axis=0)
        if beaten_from_right.any():
            lo = max(lo, float(alphas[beaten_from_right].max()))
        if beaten_from_left.any():
            hi = min(hi, float(alphas[beaten_from_left].min()))
        return lo, hi
    # 'fastssl': scripts/model_selection_sim.py. The top-k probed models by
    # performance; the window becomes the alpha range they span, on each side
    # only if some probed model lies beyond them on that side.
    k = min(window_top_k, perfs.size)
    top = np.argsort(-perfs, kind="stable")[:k]
    order = np.argsort(alphas, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    first, last = int(position[top].min()), int(position[top].max())
    if first != 0:
        lo = float(alphas[order[first]])
    if last != order.size - 1:
        hi = float(alphas[order[last]])
    return lo, hi


def select_models(features_list: Sequence[Any], labels_list: Any = None, *,
                  num_parallel: int, top_k: int,
                  probe_fn: Optional[Callable[[Any, Any], float]] = None,
                  alphas: Optional[Sequence[float]] = None,
                  fit_range: tuple[int, int] = DEFAULT_FIT_RANGE,
                  window_rule: str = "fastssl", window_top_k: Optional[int] = None,
                  progress: bool = False) -> dict[str, Any]:
    """Model selection with alpha (alpha-ReQ Algorithm 1; App. B.5 Algorithm 2).

    The pool is visited in order in H = ceil(P / M) sequential steps of
    M = ``num_parallel`` models ("train M models in parallel"). With
    alpha_min = 0, alpha_max = inf and an empty models_dict, each step:

    1. computes alpha for each of its M models (``neurojax.metrics.alpha``
       on the features, ``fit_range``; or the given ``alphas``);
    2. probes (``probe_fn(features, labels) -> performance``) only the
       models with alpha in [alpha_min, alpha_max] (inclusive) and inserts
       (alpha, performance) into models_dict;
    3. updates alpha_min, alpha_max from every model probed so far;
    4. trims models_dict to the ``top_k`` (K) best performances.

    Returns the best performance in models_dict. A model whose alpha is not
    finite (no power-law fit, e.g. collapsed features) is never probed.
    Algorithm 1 in the main
    text overwrites its ``models_stat`` every step; Algorithm 2 (App. B.5)
    accumulates it, which is what is implemented.

    The window update. The paper's set-builder (OCR, both algorithms) reads
    alpha_min = max{alpha_m | alpha_m > alpha_j & perf_m > perf_j, m, j in
    models_dict}, alpha_max = min{alpha_m | alpha_m < alpha_j & perf_m >
    perf_j}. Taken literally it is degenerate: on (alpha, perf) =
    (0.5, .60), (1.0, .90), (2.0, .70) it gives alpha_min = 2.0 >
    alpha_max = 1.0, an empty window (read with "for all j", both collapse
    onto the best model). Two readings are implemented:

    * ``'fastssl'`` (default; the authors' simulation behind Fig. 18,
      FastSSL ``scripts/model_selection_sim.py``): take the
      ``window_top_k`` (default max(1, M // 2), the code's M // 2) best
      probed models; sort all probed alphas; alpha_min becomes the smallest
      alpha among the top models unless that is the smallest probed alpha
      (then alpha_min is unchanged), alpha_max symmetrically with the
      largest. The window can widen again. Differences from the script:
      ties in performance are broken by index (the script matched top
      models by accuracy value) and k >= 1 (M // 2 = 0 made it take all).
    * ``'bracket'``: the set-builder with the element read as the beaten
      model j: alpha_min = max{alpha_j : exists m, alpha_m > alpha_j,
      perf_m > perf_j} and alpha_max = min{alpha_j : exists m, alpha_m <
      alpha_j, perf_m > perf_j} (unchanged when the set is empty). If
      performance is unimodal in alpha (the Goldilocks zone) this window
      always contains the maximiser and the best probed model, and it only
      shrinks.

    Args:
        features_list: P feature arrays (n_i, ...), one per trained model.
        labels_list: None (``probe_fn`` gets None), one label array shared
            by every model, or a sequence of P label arrays (or Nones).
        num_parallel: M >= 1.
        top_k: K >= 1 models kept.
        probe_fn: (features, labels) -> performance (higher is better);
            default ``ridge_probe_accuracy`` (needs integer labels).
        alphas: precomputed alpha per model (then features are only passed
            to ``probe_fn``).
        fit_range: ranks for ``neurojax.metrics.alpha``.
        window_rule: 'fastssl' or 'bracket'.
        window_top_k: for 'fastssl'.
        progress: tqdm bar over the steps.

    Returns:
        dict: ``best_index``, ``best_performance``, ``selected`` (indices of
        the kept top-K, best first), ``selected_performance``, ``alphas``
        [P], ``probed`` [P] bool, ``performance`` [P] (NaN where not
        probed), ``num_probes``, ``probes_per_step`` [H],
        ``windows`` [H, 2] (after each step), ``num_steps`` H.
    """
    if isinstance(features_list, (np.ndarray, jax.Array)) or not isinstance(
            features_list, Sequence) or len(features_list) == 0:
        raise ValueError("features_list must be a non-empty sequence of feature arrays")
    p = len(features_list)
    m = check_int("num_parallel", num_parallel)
    k_keep = check_int("top_k", top_k)
    if window_rule not in WINDOW_RULES:
        raise ValueError(f"window_rule must be one of {WINDOW_RULES}, got {window_rule!r}")
    k_window = max(1, m // 2) if window_top_k is None else check_int("window_top_k",
                                                                     window_top_k)
    if probe_fn is None:
        probe_fn = ridge_probe_accuracy
    elif not callable(probe_fn):
        raise ValueError(f"probe_fn must be callable (features, labels) -> performance, "
                         f"got {probe_fn!r}")
    if labels_list is None:
        labels = [None] * p
    elif isinstance(labels_list, (np.ndarray, jax.Array)):
        labels = [labels_list] * p
    elif isinstance(labels_list, Sequence) and len(labels_list) == p:
        labels = list(labels_list)
    else:
        raise ValueError(f"labels_list must be None, one label array, or a sequence of "
                         f"{p} label arrays, got {type(labels_list).__name__}"
                         + (f" of length {len(labels_list)}"
                            if isinstance(labels_list, Sequence) else ""))
    if alphas is not None:
        alpha_arr = np.asarray(alphas, np.float64)
        if alpha_arr.shape != (p,) or not np.all(np.isfinite(alpha_arr)):
            raise ValueError(f"alphas must hold {p} finite numbers, got {alphas!r}")
    else:
        alpha_arr = np.full(p, np.nan)

    lo, hi = 0.0, math.inf
    probed = np.zeros(p, bool)
    perf = np.full(p, np.nan)
    kept: list[int] = []
    probes_per_step, windows = [], []
    num_steps = -(-p // m)
    for step in tqdm(range(num_steps), desc="model selection", disable=not progress):
        batch = range(step * m, min(p, (step + 1) * m))
        if alphas is None:
            for i in batch:
                alpha_arr[i] = float(fit_alpha(features_list[i], fit_range).alpha)
        count = 0
        for i in batch:
            if np.isfinite(alpha_arr[i]) and lo <= alpha_arr[i] <= hi:
                value = float(probe_fn(features_list[i], labels[i]))
                if not math.isfinite(value):
                    raise ValueError(f"probe_fn returned {value} for model {i}")
                perf[i] = value
                probed[i] = True
                kept.append(i)
                count += 1
        probes_per_step.append(count)
        if probed.any():
            idx = np.flatnonzero(probed)
            lo, hi = _update_window(alpha_arr[idx], perf[idx], lo, hi, window_rule, k_window)
        kept = sorted(kept, key=lambda i: (-perf[i], i))[:k_keep]
        windows.append((lo, hi))
    best = kept[0] if kept else None
    return {
        "best_index": best,
        "best_performance": None if best is None else float(perf[best]),
        "selected": list(kept), "selected_performance": [float(perf[i]) for i in kept],
        "alphas": alpha_arr, "probed": probed, "performance": perf,
        "num_probes": int(probed.sum()), "probes_per_step": np.asarray(probes_per_step),
        "windows": np.asarray(windows, np.float64), "num_steps": num_steps,
    }


def random_search_best(accuracy: Any, num_probes: int) -> float:
    """Expected best accuracy of ``num_probes`` models drawn without
    replacement from the pool: with a_(1) >= ... >= a_(P) sorted,
    sum_i a_(i) C(P - i, k - 1) / C(P, k) (the best of the draw is a_(i) when
    model i is drawn and the k - 1 others come from the P - i below it)."""
    a = np.sort(np.asarray(accuracy, np.float64))[::-1]
    p, k = a.size, check_int("num_probes", num_probes)
    if k > p:
        raise ValueError(f"num_probes must be at most the pool size {p}, got {k}")
    weights = np.array([math.comb(p - i, k - 1) for i in range(1, p + 1)], np.float64)
    return float(a @ weights / math.comb(p, k))


def selection_over_orders(accuracy: Any, alphas: Any, orders: Sequence[Any], *,
                          num_parallel: int, top_k: int,
                          progress: bool = False) -> dict[str, Any]:
    """``select_models`` (Algorithm 1) over ``orders`` (permutations) of a
    pool whose probe accuracies are known (the probe is a lookup) and whose
    ``alphas`` are measured, for each window rule. Per rule: probability
    that the selection is within 1 point of the pool's best accuracy, mean
    and max shortfall, mean number of probes against P (no filtering), the
    mean probes per step, and ``random_search_mean_shortfall``: the
    expected shortfall of picking the best of as many models drawn at
    random (``random_search_best``), averaged over the same orders."""
    acc = np.asarray(accuracy, np.float64)
    alphas = np.asarray(alphas, np.float64)
    pool_size = acc.size
    if acc.ndim != 1 or alphas.shape != acc.shape:
        raise ValueError(f"accuracy and alphas must be 1-D of one length, got {acc.shape} "
                         f"and {alphas.shape}")
    tokens = [np.full((1, 1), i) for i in range(pool_size)]  # the probe looks up model i

    def probe(token, _labels):
        return acc[int(token[0, 0])]

    best_acc = float(acc.max())
    out: dict[str, Any] = {}
    for rule in tqdm(WINDOW_RULES, desc="window rules", disable=not progress):
        shortfall, probes, per_step, random_shortfall = [], [], [], []
        for order in orders:
            r = select_models([tokens[i] for i in order], None, num_parallel=num_parallel,
                              top_k=top_k, probe_fn=probe, alphas=alphas[order],
                              window_rule=rule)
            shortfall.append(best_acc - r["best_performance"])
            probes.append(r["num_probes"])
            per_step.append(r["probes_per_step"])
            random_shortfall.append(best_acc - random_search_best(acc, r["num_probes"]))
        shortfall = np.asarray(shortfall)
        out[rule] = {"p_within_1pt": float(np.mean(shortfall <= 0.01)),
                     "mean_shortfall": float(shortfall.mean()),
                     "max_shortfall": float(shortfall.max()),
                     "mean_probes": float(np.mean(probes)),
                     "probes_without_filtering": pool_size,
                     "mean_probes_per_step": np.mean(np.stack(per_step), axis=0),
                     "num_steps": -(-pool_size // num_parallel),
                     "random_search_mean_shortfall": float(np.mean(random_shortfall))}
    return out
