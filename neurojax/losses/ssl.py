"""Self-supervised losses: Barlow Twins, VICReg, SimCLR (NT-Xent), spectral
contrastive, and the multi-view (m >= 2 augmentations) forms of Barlow Twins
and VICReg from Ghosh et al., "Harnessing small projectors and multiple views
for efficient vision pretraining" (NeurIPS 2024; Ghosh, thesis Part III,
Sec. 3.2, Eq. 10, and Sec. 4.2).

Every loss is a pure function ``loss(embeddings..., **hyper) -> (scalar,
aux)``. ``aux`` holds the unweighted terms, so the loss is always the
weighted sum of ``aux``'s entries (the weights are the hyperparameters named
in each docstring). Hyperparameters may be traced arrays (``jax.vmap`` over
``lambd``, ``temperature``, ...); their ranges are checked only when they
are concrete. Shapes are static and checked before anything is traced.

Inputs of any float dtype are accepted; low-precision inputs (bfloat16,
float16) are upcast to float32 first, because the batch statistics
(cross-correlations near 1, variances) lose too much in bfloat16. Matrix
products use ``Precision.HIGHEST`` so GPUs do not silently use TF32.

Shapes: two-view losses take ``z_a, z_b`` of shape ``(n, d)`` (n examples,
d projector dimensions); multi-view losses take ``z`` of shape ``(m, n, d)``
(m views of the same n examples).
"""
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_choice, check_real

Array = jax.Array
_HI = jax.lax.Precision.HIGHEST

NORMALIZATIONS = ("per_view", "joint", "none")
MULTIVIEW_FORMS = ("auto", "mean", "leave_one_out", "all_pairs")
VARIANCE_REDUCTIONS = ("mean", "sum")


# --------------------------------------------------------------------------
# Argument checks (trace time)
# --------------------------------------------------------------------------

def _check_ddof(ddof: Any) -> None:
    if ddof not in (0, 1) or isinstance(ddof, bool):
        raise ValueError(f"ddof must be 0 (biased) or 1 (unbiased), got {ddof!r}")


def _as_float(name: str, z: Any) -> Array:
    z = jnp.asarray(z)
    if not jnp.issubdtype(z.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point array, got dtype {z.dtype}")
    # bf16/f16 -> f32; f32 and f64 stay as they are
    return z.astype(jnp.promote_types(z.dtype, jnp.float32))


def _check_pair(z_a: Any, z_b: Any) -> tuple[Array, Array]:
    z_a, z_b = _as_float("z_a", z_a), _as_float("z_b", z_b)
    if z_a.ndim != 2:
        raise ValueError(f"z_a must have shape (n, d), got {z_a.shape}")
    if z_a.shape != z_b.shape:
        raise ValueError(f"z_a and z_b shapes differ: {z_a.shape} vs {z_b.shape}")
    if z_a.shape[0] < 2:
        raise ValueError(f"batch size n = z_a.shape[0] must be >= 2, got {z_a.shape[0]}")
    if z_a.shape[1] < 1:
        raise ValueError("embedding dimension d = z_a.shape[1] must be >= 1")
    return z_a, z_b


def _check_views(z: Any) -> Array:
    z = _as_float("z", z)
    if z.ndim != 3:
        raise ValueError(f"z must have shape (m, n, d) (views, batch, dim), got {z.shape}")
    if z.shape[0] < 2:
        raise ValueError(f"the number of views m = z.shape[0] must be >= 2, got {z.shape[0]}")
    if z.shape[1] < 2:
        raise ValueError(f"batch size n = z.shape[1] must be >= 2, got {z.shape[1]}")
    if z.shape[2] < 1:
        raise ValueError("embedding dimension d = z.shape[2] must be >= 1")
    return z


def _resolve_form(form: str, m: int) -> str:
    check_choice("form", form, MULTIVIEW_FORMS)
    if form == "auto":
        # the official code: two views -> the two-view loss; more -> Eq. 10
        return "leave_one_out" if m == 2 else "mean"
    return form


# --------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------

def _standardize(z: Array, normalization: str, ddof: int, eps: Any) -> Array:
    """Batch-standardise views ``z`` of shape (m, n, d) per dimension.

    'per_view': statistics over the n rows of each view (BatchNorm1d without
    affine, as in the official Barlow Twins); 'joint': over all m*n rows
    stacked (FastSSL's multi-augmentation code); 'none': unchanged.
    z_hat = (z - mean) / sqrt(var + eps), var = sum (z - mean)^2 / (N - ddof).
    """
    if normalization == "none":
        return z
    axes = (1,) if normalization == "per_view" else (0, 1)
    count = z.shape[1] if normalization == "per_view" else z.shape[0] * z.shape[1]
    zc = z - jnp.mean(z, axis=axes, keepdims=True)
    var = jnp.sum(zc * zc, axis=axes, keepdims=True) / (count - ddof)
    return zc * jax.lax.rsqrt(var + eps)


def _offdiag_sq(c: Array) -> Array:
    """sum_{i != j} c_ij^2 over the last two axes (masked, not diag-subtracted,
    so small off-diagonal entries do not cancel against a large diagonal)."""
    eye = jnp.eye(c.shape[-1], dtype=bool)
    return jnp.sum(jnp.where(eye, 0.0, c) ** 2, axis=(-2, -1))


def _xcorr(a: Array, b: Array) -> Array:
    """a^T b / n for a, b of shape (..., n, d) -> (..., d, d)."""
    return jnp.einsum("...ni,...nj->...ij", a, b, precision=_HI) / a.shape[-2]


def _bt_terms(za: Array, zb: Array) -> tuple[Array, Array]:
    """(sum_i (1 - C_ii)^2, sum_{i!=j} C_ij^2) with C = za^T zb / n."""
    c = _xcorr(za, zb)
    diag = jnp.diagonal(c, axis1=-2, axis2=-1)
    return jnp.sum((1.0 - diag) ** 2, axis=-1), _offdiag_sq(c)


def _all_pairs(m: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(m, k=1)


def _vic_variance(x: Array, std_target: Any, eps: Any, ddof: int) -> Array:
    """v(X) = (1/d) sum_i max(0, gamma - sqrt(Var(x_:,i) + eps))."""
    n = x.shape[-2]
    xc = x - jnp.mean(x, axis=-2, keepdims=True)
    var = jnp.sum(xc * xc, axis=-2) / (n - ddof)
    return jnp.mean(jax.nn.relu(std_target - jnp.sqrt(var + eps)), axis=-1)


def _vic_covariance(x: Array, ddof: int) -> Array:
    """c(X) = (1/d) sum_{i!=j} Cov(X)_ij^2, Cov = Xc^T Xc / (n - ddof)."""
    n, d = x.shape[-2], x.shape[-1]
    xc = x - jnp.mean(x, axis=-2, keepdims=True)
    cov = jnp.einsum("...ni,...nj->...ij", xc, xc, precision=_HI) / (n - ddof)
    return _offdiag_sq(cov) / d


def _vic_pair_terms(za: Array, zb: Array, std_target: Any, eps: Any, ddof: int,
                    var_reduce: str) -> tuple[Array, Array, Array]:
    """Unweighted (invariance, variance, covariance) of two-view VICReg."""
    invariance = jnp.mean((za - zb) ** 2, axis=(-2, -1))
    variance = _vic_variance(za, std_target, eps, ddof) + \
        _vic_variance(zb, std_target, eps, ddof)
    if var_reduce == "mean":
        variance = 0.5 * variance
    covariance = _vic_covariance(za, ddof) + _vic_covariance(zb, ddof)
    return invariance, variance, covariance


def _check_vicreg_hyper(inv, var, cov, std_target, eps, ddof, var_reduce) -> None:
    check_real("inv", inv, low=0)
    check_real("var", var, low=0)
    check_real("cov", cov, low=0)
    check_real("std_target", std_target, low=0, low_open=True)
    check_real("eps", eps, low=0)
    _check_ddof(ddof)
    check_choice("var_reduce", var_reduce, VARIANCE_REDUCTIONS)


def _check_bt_hyper(lambd, normalization, ddof, eps) -> None:
    check_real("lambd", lambd, low=0)
    check_choice("normalization", normalization, NORMALIZATIONS)
    _check_ddof(ddof)
    check_real("eps", eps, low=0)


# --------------------------------------------------------------------------
# Barlow Twins
# --------------------------------------------------------------------------

def barlow_twins(z_a: Array, z_b: Array, lambd: Any, *,
                 normalization: str = "per_view", ddof: int = 0,
                 eps: Any = 1e-5) -> tuple[Array, dict]:
    """Barlow Twins loss (Zbontar et al. 2021, Eqs. 1-2; thesis Part III Eq. 26,
    Appendix D Eqs. 47-48).

        L = sum_i (1 - C_ii)^2 + lambd * sum_i sum_{j != i} C_ij^2,
        C_ij = (1/n) sum_b z_hat_a[b, i] z_hat_b[b, j],

    with z_hat the batch-standardised embeddings. ``lambd`` is the paper's
    orthogonality weight beta (Eq. 1: L = L_inv + beta L_collapse); the paper
    finds beta* proportional to 1/d (Sec. 4.1), see
    ``neurojax.models.projector.beta_for_dim``.

    Normalisation (the references disagree): the default follows the official
    Barlow Twins code and the paper's "batch-standardised embeddings of two
    views": each view separately, ``(z - mean) / sqrt(var + eps)`` with the
    biased variance (PyTorch ``BatchNorm1d(affine=False)``, eps = 1e-5).
    FastSSL (the paper's code) instead stacks the views and uses
    ``z.std(0)``: pass ``normalization='joint', ddof=1, eps=0``.
    ``normalization='none'`` takes already-standardised inputs.

    Args:
        z_a, z_b: embeddings of two views, shape (n, d), n >= 2.
        lambd: weight of the redundancy (off-diagonal) term, >= 0.
        normalization: 'per_view' (default), 'joint' or 'none'.
        ddof: 0 (biased variance, default) or 1 (unbiased).
        eps: added to the variance before the square root, >= 0.

    Returns:
        ``(loss, {'invariance': sum_i (1 - C_ii)^2,
        'redundancy': sum_{i!=j} C_ij^2})``; loss = invariance +
        lambd * redundancy.
    """
    z_a, z_b = _check_pair(z_a, z_b)
    _check_bt_hyper(lambd, normalization, ddof, eps)
    z = _standardize(jnp.stack([z_a, z_b]), normalization, ddof, eps)
    invariance, redundancy = _bt_terms(z[0], z[1])
    loss = invariance + lambd * redundancy
    return loss, {"invariance": invariance, "redundancy": redundancy}


def barlow_twins_multiview(z: Array, lambd: Any, *, form: str = "auto",
                           normalization: str = "per_view", ddof: int = 0,
                           eps: Any = 1e-5) -> tuple[Array, dict]:
    """Barlow Twins over m >= 2 views of each example (thesis Part III, Eq. 10).

    Eq. 10 pulls every view towards the mean embedding over views,
    f_bar(x) = (1/m) sum_j f(x_j), a sample estimate of T_M f, and keeps the
    orthogonality constraint; that costs O(m) per example instead of the
    O(m^2) of comparing every pair of views. The views are first
    standardised as in ``barlow_twins`` (per view by default). Forms:

    'mean' (Eq. 10, O(m); FastSSL's multi-augmentation code for m > 2)::

        z_bar = (1/m) sum_j z_j
        c_ji  = (1/n) sum_b z_j[b, i] z_bar[b, i]          (view j vs the mean)
        invariance = (1/m) sum_j sum_i (1 - c_ji)^2
        redundancy = sum_{i != k} A_ik^2,  A = z_bar^T z_bar / n

      i.e. the on-diagonal term compares each view with the mean and the
      orthogonality is applied to the mean embedding. Link to Eq. 10: for
      unit-variance views (ddof=0, eps=0, 'per_view'),
      sum_j (1 - c_ji) = E_b sum_j (z_bar[b, i] - z_j[b, i])^2, the
      dimension-i summand of Eq. 10 (see ``eq10_invariance``). At m = 2 this
      form is *not* the two-view loss: c_ji = (1 + C_ii)/2, so its invariance
      is exactly 1/4 of Barlow Twins' sum_i (1 - C_ii)^2 and its redundancy
      is that of the autocorrelation of (z_1 + z_2)/2, which also contains
      each view's own autocorrelation, instead of the cross-correlation C.

    'leave_one_out' (O(m)): view j against the mean of the other views,
    z_bar_{-j} = (m z_bar - z_j)/(m - 1); the loss is the mean over j of
    ``barlow_twins``' terms for (z_j, z_bar_{-j}). At m = 2 it is exactly
    the two-view loss (both orderings, averaged; Barlow Twins is symmetric
    under swapping the views since C -> C^T). This is FastSSL's m = 2 branch.

    'all_pairs' (O(m^2)): the mean over the m(m-1)/2 pairs j < k of the
    two-view terms; the baseline Eq. 10 replaces. Exactly the two-view loss
    at m = 2.

    'auto' (default): what the paper's code does: the two-view loss at
    m = 2 ('leave_one_out', which equals ``barlow_twins``) and 'mean' for
    m > 2. So with m = 2 this function reduces to ``barlow_twins`` exactly,
    and with m = 4, 8 it is the O(m) loss of the paper's multi-augmentation
    experiments (Sec. 4.2, Table 2).

    Args:
        z: embeddings, shape (m, n, d) with m >= 2 views, n >= 2.
        lambd: redundancy weight beta, >= 0.
        form: 'auto', 'mean', 'leave_one_out' or 'all_pairs'.
        normalization, ddof, eps: as in ``barlow_twins``; FastSSL's
            multi-augmentation code is ``normalization='joint', ddof=1, eps=0``.

    Returns:
        ``(loss, {'invariance': ..., 'redundancy': ...})``; loss = invariance
        + lambd * redundancy.
    """
    z = _check_views(z)
    _check_bt_hyper(lambd, normalization, ddof, eps)
    m = z.shape[0]
    form = _resolve_form(form, m)
    z = _standardize(z, normalization, ddof, eps)
    if form == "mean":
        z_bar = jnp.mean(z, axis=0)
        c = jnp.mean(z * z_bar, axis=1)                      # (m, d)
        invariance = jnp.sum((1.0 - c) ** 2) / m
        redundancy = _offdiag_sq(_xcorr(z_bar, z_bar))
    elif form == "leave_one_out":
        others = (jnp.sum(z, axis=0) - z) / (m - 1)          # (m, n, d)
        inv, red = _bt_terms(z, others)
        invariance, redundancy = jnp.mean(inv), jnp.mean(red)
    else:
        j, k = _all_pairs(m)
        inv, red = _bt_terms(z[j], z[k])
        invariance, redundancy = jnp.mean(inv), jnp.mean(red)
    loss = invariance + lambd * redundancy
    return loss, {"invariance": invariance, "redundancy": redundancy}


def eq10_invariance(z: Array) -> Array:
    """The invariance term of Eq. 10 (thesis Part III, Sec. 3.4), per example:

        E_x sum_i sum_{j=1}^m (f_bar_i(x) - f_i(x_j))^2,
        f_bar_i(x) = (1/m) sum_j f_i(x_j),

    estimated as the batch mean over the n examples of ``z`` (m, n, d), in
    O(m) per example. Identity: sum_j ||f(x_j) - f_bar||^2 =
    (1/(2m)) sum_{j,k} ||f(x_j) - f(x_k)||^2, the all-pairs invariance.
    """
    z = _check_views(z)
    z_bar = jnp.mean(z, axis=0)
    return jnp.mean(jnp.sum((z - z_bar) ** 2, axis=(0, 2)))


# --------------------------------------------------------------------------
# VICReg
# --------------------------------------------------------------------------

def vicreg(z_a: Array, z_b: Array, inv: Any = 25.0, var: Any = 25.0,
           cov: Any = 1.0, *, std_target: Any = 1.0, eps: Any = 1e-4,
           ddof: int = 1, var_reduce: str = "mean") -> tuple[Array, dict]:
    """VICReg loss (Bardes et al. 2022, Eqs. 1-6; thesis Appendix D Eq. 49).

        L = inv * s(Z, Z') + var * V + cov * [c(Z) + c(Z')],
        s(Z, Z') = (1/(n d)) sum_b ||z_b - z'_b||^2            (MSE)
        v(Z) = (1/d) sum_i max(0, gamma - sqrt(Var(z_:,i) + eps))
        c(Z) = (1/d) sum_{i != j} Cov(Z)_ij^2,
        Cov(Z) = (1/(n - 1)) sum_b (z_b - z_mean)(z_b - z_mean)^T.

    Conventions (the official code, facebookresearch/vicreg ``main_vicreg.py``):
    unbiased variance and covariance (ddof=1), eps = 1e-4 inside the square
    root, gamma = 1, coefficients 25/25/1, and the variance term averaged
    over the two views, V = [v(Z) + v(Z')]/2 (``var_reduce='mean'``). The
    paper's Eq. writes V = v(Z) + v(Z') (vicreg issues #8, #26): pass
    ``var_reduce='sum'``. The covariance term is summed over the views in
    both. The invariance uses the raw embeddings; centring before or after
    the variance term (vicreg issue #16) changes nothing numerically, so no
    option is needed for that ordering.

    The paper's orthogonality weight is beta = cov / inv (Fig. 8): FastSSL
    fixes cov = 1 and sets inv = var = 1/beta.

    Args:
        z_a, z_b: embeddings of two views, shape (n, d), n >= 2.
        inv, var, cov: coefficients (lambda, mu, nu), each >= 0.
        std_target: gamma, the target standard deviation, > 0.
        eps: added to the variance inside the square root, >= 0.
        ddof: 1 (unbiased, default) or 0, for Var and Cov.
        var_reduce: 'mean' (code, default) or 'sum' (paper) over the views.

    Returns:
        ``(loss, {'invariance': s, 'variance': V, 'covariance': c(Z) + c(Z')})``;
        loss = inv * invariance + var * variance + cov * covariance.
    """
    z_a, z_b = _check_pair(z_a, z_b)
    _check_vicreg_hyper(inv, var, cov, std_target, eps, ddof, var_reduce)
    invariance, variance, covariance = _vic_pair_terms(
        z_a, z_b, std_target, eps, ddof, var_reduce)
    loss = inv * invariance + var * variance + cov * covariance
    return loss, {"invariance": invariance, "variance": variance,
                  "covariance": covariance}


def vicreg_multiview(z: Array, inv: Any = 25.0, var: Any = 25.0, cov: Any = 1.0,
                     *, form: str = "auto", std_target: Any = 1.0,
                     eps: Any = 1e-4, ddof: int = 1,
                     var_reduce: str = "mean") -> tuple[Array, dict]:
    """VICReg over m >= 2 views of each example (thesis Part III, Eq. 10).

    Forms (conventions of ``vicreg`` otherwise):

    'mean' (Eq. 10, O(m)): every view is pulled to the mean embedding
    z_bar = (1/m) sum_j z_j, and the variance and covariance terms are
    applied to z_bar in place of both views::

        invariance = (2/(m - 1)) sum_j MSE(z_j, z_bar)
                   = 2/(d (m - 1)) * eq10_invariance(z)
                   = mean over ordered pairs j != k of MSE(z_j, z_k)
        variance   = v(z_bar)   (2 v(z_bar) with var_reduce='sum')
        covariance = 2 c(z_bar)

      The invariance scale 2/(m - 1) makes the O(m) term equal *exactly* to
      the O(m^2) all-pairs invariance (sum_{j,k} ||z_j - z_k||^2 =
      2m sum_j ||z_j - z_bar||^2), hence to the two-view MSE at m = 2. With
      all views equal, every form equals ``vicreg(z_1, z_1)``.

    'leave_one_out' (O(m)): the mean over j of the two-view terms for
    (z_j, mean of the other views). FastSSL's multi-augmentation VICReg
    uses this pairing at every m (its loop also skips the last view and
    doubles the variance term inside the loop; those slips are not copied).

    'all_pairs' (O(m^2)): the mean over pairs j < k of the two-view terms.

    'auto' (default): the two-view loss at m = 2 ('leave_one_out', equal
    to ``vicreg``), 'mean' for m > 2, as for ``barlow_twins_multiview``.

    Returns:
        ``(loss, {'invariance', 'variance', 'covariance'})``; loss =
        inv * invariance + var * variance + cov * covariance.
    """
    z = _check_views(z)
    _check_vicreg_hyper(inv, var, cov, std_target, eps, ddof, var_reduce)
    m = z.shape[0]
    form = _resolve_form(form, m)
    if form == "mean":
        z_bar = jnp.mean(z, axis=0)
        invariance = 2.0 / (m - 1) * jnp.sum(jnp.mean((z - z_bar) ** 2, axis=(1, 2)))
        variance = _vic_variance(z_bar, std_target, eps, ddof)
        if var_reduce == "sum":
            variance = 2.0 * variance
        covariance = 2.0 * _vic_covariance(z_bar, ddof)
    else:
        if form == "leave_one_out":
            za, zb = z, (jnp.sum(z, axis=0) - z) / (m - 1)
        else:
            j, k = _all_pairs(m)
            za, zb = z[j], z[k]
        terms = _vic_pair_terms(za, zb, std_target, eps, ddof, var_reduce)
        invariance, variance, covariance = (jnp.mean(t) for t in terms)
    loss = inv * invariance + var * variance + cov * covariance
    return loss, {"invariance": invariance, "variance": variance,
                  "covariance": covariance}


# --------------------------------------------------------------------------
# Contrastive losses
# --------------------------------------------------------------------------

def simclr(z_a: Array, z_b: Array, temperature: Any, *,
           eps: float = 1e-12) -> tuple[Array, dict]:
    """SimCLR's NT-Xent loss (Chen et al. 2020, Sec. 2.1, Eq. 1) over 2n views.

    With u_k = z_k / ||z_k|| for the 2n stacked embeddings [z_a; z_b],
    s_kl = u_k . u_l / temperature and p(k) the index of k's other view:

        L = (1/(2n)) sum_k [ -s_{k p(k)} + log sum_{l != k} exp(s_kl) ],

    averaged over all 2n anchors (both orderings), the denominator running
    over the positive and the 2n - 2 negatives. Equals
    ``optax.losses.ntxent`` with labels (0..n-1, 0..n-1).

    Args:
        z_a, z_b: embeddings, shape (n, d), n >= 2; row b of each is a view
            of example b.
        temperature: tau > 0.
        eps: floor on the squared norm before normalising (avoids 0/0).

    Returns:
        ``(loss, {'invariance': mean_k -s_{k p(k)},
        'uniformity': mean_k log sum_{l != k} exp(s_kl)})``; loss = the sum.
    """
    z_a, z_b = _check_pair(z_a, z_b)
    check_real("temperature", temperature, low=0, low_open=True)
    check_real("eps", eps, low=0)
    n = z_a.shape[0]
    z = jnp.concatenate([z_a, z_b])
    u = z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, -1, keepdims=True), eps))
    s = jnp.matmul(u, u.T, precision=_HI) / temperature
    positive = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
    s_pos = jnp.take_along_axis(s, positive[:, None], axis=1)[:, 0]
    masked = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, s)
    invariance = -jnp.mean(s_pos)
    uniformity = jnp.mean(jax.nn.logsumexp(masked, axis=1))
    return invariance + uniformity, {"invariance": invariance,
                                     "uniformity": uniformity}


def spectral_contrastive(z_a: Array, z_b: Array, *,
                         max_norm: Optional[Any] = None) -> tuple[Array, dict]:
    """Spectral contrastive loss (HaoChen et al. 2021, Sec. 3; thesis Appendix
    C.2, Eq. 41).

        L = -2 E_{x, x+}[f(x)^T f(x+)] + E_{x, x-}[(f(x)^T f(x-))^2],

    estimated on a batch of n positive pairs (z_a[b], z_b[b]) with the
    negatives the cross-view pairs of different examples:

        L = -(2/n) sum_b z_a[b] . z_b[b]
            + 1/(n(n-1)) sum_{b != b'} (z_a[b] . z_b[b'])^2,

    as in the authors' code. The thesis (Eq. 42) splits the population
    loss into an orthogonality term ||Z^T Z - I||_F^2 and an invariance
    term; here the aux terms are the two expectations above.

    Args:
        z_a, z_b: embeddings, shape (n, d), n >= 2 (not normalised).
        max_norm: ``None`` (default, the paper's loss) or r > 0: rows with a
            norm above r are rescaled to norm r first, as the authors' code
            does with r = sqrt(mu) = 1.

    Returns:
        ``(loss, {'invariance': -2 E[z_a . z_b],
        'orthogonality': E[(z_a . z_b')^2]})``; loss = the sum.
    """
    z_a, z_b = _check_pair(z_a, z_b)
    if max_norm is not None:
        check_real("max_norm", max_norm, low=0, low_open=True)

        def clip(x: Array) -> Array:
            norm = jnp.sqrt(jnp.sum(x * x, -1, keepdims=True))
            return x * jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))

        z_a, z_b = clip(z_a), clip(z_b)
    n = z_a.shape[0]
    p = jnp.matmul(z_a, z_b.T, precision=_HI)
    invariance = -2.0 * jnp.mean(jnp.diagonal(p))
    orthogonality = _offdiag_sq(p) / (n * (n - 1))
    return invariance + orthogonality, {"invariance": invariance,
                                        "orthogonality": orthogonality}


def barlow_twins_linear(w: Array, t: Array, beta: Any) -> tuple[Array, dict]:
    """Barlow Twins loss of a linear network on a correlation T (thesis Part III,
    App. B before Eq. 31; the population form of ``barlow_twins``, Eq. 26):

        L_BT(W) = sum_i (C_ii - 1)^2 + beta sum_i sum_{j != i} C_ij^2,   C = W T W^T.

    Its gradient flow is ``neurojax.metrics.bt_flow.bt_flow_rhs`` (Eq. 34).

    Args:
        w: (m, n) weights (m outputs).
        t: (n, n) symmetric augmentation correlation (e.g.
            ``neurojax.metrics.bt_flow.augmentation_correlation``).
        beta: weight of the redundancy term, >= 0.

    Returns:
        ``(loss, {'invariance': sum_i (1 - C_ii)^2, 'redundancy':
        sum_{i!=j} C_ij^2})``.
    """
    w, t = jnp.asarray(w), jnp.asarray(t)
    if w.ndim != 2 or t.shape != (w.shape[1], w.shape[1]):
        raise ValueError(f"w must be (m, n) and t (n, n), got {w.shape} and {t.shape}")
    check_real("beta", beta, low=0)
    c = jnp.matmul(jnp.matmul(w, t, precision=_HI), w.T, precision=_HI)
    invariance = jnp.sum((1.0 - jnp.diagonal(c)) ** 2)
    redundancy = _offdiag_sq(c)
    return invariance + beta * redundancy, {"invariance": invariance,
                                            "redundancy": redundancy}


SSL_LOSSES: dict[str, Callable[..., tuple[Array, dict]]] = {
    "barlow_twins": barlow_twins,
    "vicreg": vicreg,
    "simclr": simclr,
    "spectral_contrastive": spectral_contrastive,
    "barlow_twins_multiview": barlow_twins_multiview,
    "vicreg_multiview": vicreg_multiview,
}
