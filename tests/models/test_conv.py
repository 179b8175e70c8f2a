"""conv2d / Conv against XLA's convolution and its autodiff, in every mode.

The reference is ``jax.lax.conv_general_dilated`` differentiated by JAX. The
CPU fast path is exercised twice: ``impl='auto'`` (what models get on CPU:
the tap formulation only for 1x1 kernels and small strided outputs) and
``impl='taps'`` (the tap formulation forced for every shape). The GPU/TPU
path is checked by lowering for those platforms with ``jax.export``.
"""
import functools
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export, lax
from jax.flatten_util import ravel_pytree

from neurojax.models import conv as conv_lib
from neurojax.models.conv import Conv, conv2d
from tests._x64 import float64 as _x64

DN = ("NHWC", "HWIO", "NHWC")

# (kernel, stride, padding, input size): 1x1/3x3 at strides 1 and 2, a 7x7
# stride-2 stem, odd sizes, SAME / VALID / explicit (asymmetric, and negative).
CASES = [
    (1, 1, "SAME", 7), (1, 2, "SAME", 7), (1, 2, "VALID", 8),
    (3, 1, "SAME", 7), (3, 1, "VALID", 9), (3, 1, ((2, 1), (0, 2)), 7),
    (3, 2, "SAME", 9), (3, 2, "VALID", 7), (3, 2, ((1, 0), (2, 1)), 8),
    (3, 2, ((-1, 1), (1, 1)), 9), (7, 2, ((3, 3), (3, 3)), 11),
]


def _auto_choice(kernel, stride, padding, size):
    """What impl='auto' picks for the CPU weight gradient of a test case."""
    pads = conv_lib._explicit_padding((size, size), (kernel, kernel), (stride, stride),
                                      padding)
    return conv_lib._cpu_weight_grad_impl((2, size, size, 3), (kernel, kernel, 3, 4),
                                          (stride, stride), pads)[0]


# 'taps' for every case; 'auto' (through platform_dependent) for cases where
# it picks taps, and for one where it resolves to XLA's conv.
VALUE_CASES = ([c + ("taps",) for c in CASES] +
               [CASES[i] + ("auto",) for i in (1, 8, 10, 3)])
assert [_auto_choice(*CASES[i]) for i in (1, 8, 10, 3)] == ["taps"] * 3 + ["xla"]


def _ref(x, k, stride, padding):
    return lax.conv_general_dilated(x, k, (stride, stride), padding,
                                    dimension_numbers=DN)


def _normal(seed, shape, dtype=jnp.float32, scale=1.0):
    # numpy's generator: jax.random would compile a sampler per shape.
    rng = np.random.default_rng(seed)
    return jnp.asarray(scale * rng.standard_normal(shape), dtype)


def _inputs(kernel, size, dtype=jnp.float32, cin=3, cout=4, batch=2, seed=0):
    x = _normal(seed, (batch, size, size, cin), dtype)
    k = _normal(seed + 100, (kernel, kernel, cin, cout), dtype, 1.0 / kernel)
    return x, k


def _loss(conv):
    # A non-linear scalar so both gradients depend on the output values.
    return lambda x, k: jnp.sum(jnp.sin(conv(x, k)).astype(jnp.float32))


@pytest.fixture(autouse=True)
def _full_precision():
    # On GPU, float32 convs and dots may use TF32 by default; compare exactly.
    with jax.default_matmul_precision("float32"):
        yield


def _value_and_grads(conv):
    return lambda x, k: (conv(x, k), jax.grad(_loss(conv), (0, 1))(x, k))


@pytest.mark.parametrize("kernel,stride,padding,size,impl", VALUE_CASES)
def test_value_and_grads_equal_xla(kernel, stride, padding, size, impl):
    x, k = _inputs(kernel, size)
    ours = functools.partial(conv2d, strides=(stride, stride), padding=padding,
                             impl=impl)
    ref = functools.partial(_ref, stride=stride, padding=padding)
    chex.assert_trees_all_close(jax.jit(_value_and_grads(ours))(x, k),
                                jax.jit(_value_and_grads(ref))(x, k),
                                atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel,stride,padding,size", [CASES[1], CASES[8]])
def test_without_jit(kernel, stride, padding, size):
    x, k = _inputs(kernel, size)
    ours = functools.partial(conv2d, strides=(stride, stride), padding=padding,
                             impl="taps")
    ref = functools.partial(_ref, stride=stride, padding=padding)
    chex.assert_trees_all_close(_value_and_grads(ours)(x, k),
                                _value_and_grads(ref)(x, k), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel,stride,padding,size,impl",
                         [(1, 2, "SAME", 8, "auto"), (3, 1, "SAME", 7, "taps"),
                          (3, 2, "SAME", 9, "taps")])
def test_bfloat16(kernel, stride, padding, size, impl):
    x, k = _inputs(kernel, size, jnp.bfloat16, cin=8)
    ours = jax.jit(functools.partial(conv2d, strides=(stride, stride),
                                     padding=padding, impl=impl))
    ref = functools.partial(_ref, stride=stride, padding=padding)
    y = ours(x, k)
    assert y.dtype == jnp.bfloat16
    # Reference in float32 on the same (bfloat16-rounded) inputs.
    x32, k32 = x.astype(jnp.float32), k.astype(jnp.float32)
    chex.assert_trees_all_close(y.astype(jnp.float32), ref(x32, k32),
                                atol=3e-2, rtol=3e-2)
    g = jax.jit(jax.grad(_loss(ours), (0, 1)))(x, k)
    g_ref = jax.jit(jax.grad(_loss(ref), (0, 1)))(x32, k32)
    assert g[0].dtype == g[1].dtype == jnp.bfloat16
    for a, b in zip(g, g_ref):
        scale = float(jnp.max(jnp.abs(b)))
        chex.assert_trees_all_close(a.astype(jnp.float32), b,
                                    atol=3e-2 * scale, rtol=3e-2)


@pytest.mark.parametrize("impl", ["auto"])  # taps here (stride 2, small)
def test_vmap_over_inputs_and_kernels(impl):
    xs, _ = _inputs(3, 9, batch=6)
    xs = xs.reshape(3, 2, 9, 9, 3)
    ks = _normal(5, (3, 3, 3, 3, 4))
    ours = functools.partial(conv2d, strides=(2, 2), padding="SAME", impl=impl)
    ref = functools.partial(_ref, stride=2, padding="SAME")
    chex.assert_trees_all_close(jax.jit(jax.vmap(ours))(xs, ks),
                                jax.vmap(ref)(xs, ks), atol=1e-5, rtol=1e-5)
    # Kernel shared across the mapped axis; gradient of the vmapped function.
    f = lambda c: lambda x, k: jnp.sum(jnp.sin(jax.vmap(c, (0, None))(x, k)))
    chex.assert_trees_all_close(jax.jit(jax.grad(f(ours), (0, 1)))(xs, ks[0]),
                                jax.jit(jax.grad(f(ref), (0, 1)))(xs, ks[0]),
                                atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel,stride,impl",
                         [(1, 2, "auto"), (3, 1, "taps"), (3, 2, "taps")])
def test_jvp_and_jacfwd(kernel, stride, impl):
    x, k = _inputs(kernel, 7)
    tx, tk = _inputs(kernel, 7, seed=1)
    ours = functools.partial(conv2d, strides=(stride, stride), impl=impl)
    ref = functools.partial(_ref, stride=stride, padding="SAME")
    y, t = jax.jit(lambda *a: jax.jvp(ours, a[:2], a[2:]))(x, k, tx, tk)
    y_ref, t_ref = jax.jit(lambda *a: jax.jvp(ref, a[:2], a[2:]))(x, k, tx, tk)
    chex.assert_trees_all_close((y, t), (y_ref, t_ref), atol=1e-5, rtol=1e-5)
    # One tangent a symbolic zero (only the kernel / only the input varies).
    jacs = lambda f: jax.jit(lambda x, k: (
        jax.jacfwd(f, 0)(x, k), jax.jacfwd(f, 1)(x, k), jax.jacrev(f, 1)(x, k)))
    # jacrev of ours is compared too: the transpose of the tangent rule.
    chex.assert_trees_all_close(jacs(ours)(x[:1], k), jacs(ref)(x[:1], k),
                                atol=1e-5, rtol=1e-5)


def _tiny_model(conv):
    """Two convolutions (3x3 s1, then 3x3 s2 or 1x1 s2) and a dense layer."""
    def model(params, x):
        h = jnp.tanh(conv(x, params["c1"], (1, 1), "SAME"))
        h = jnp.tanh(conv(h, params["c2"], (2, 2), "SAME")
                     + conv(h, params["sc"], (2, 2), "SAME"))
        return jnp.tanh(h.reshape(h.shape[0], -1) @ params["w"])

    def loss(params, x, y):
        return jnp.mean((model(params, x) - y) ** 2)
    return loss


def _tiny_params(dtype):
    return {"c1": _normal(30, (3, 3, 2, 3), dtype, 0.5),
            "c2": _normal(31, (3, 3, 3, 2), dtype, 0.5),
            "sc": _normal(32, (1, 1, 3, 2), dtype, 0.5),
            "w": _normal(33, (2 * 3 * 3, 2), dtype, 0.3)}


# 'auto' runs the first conv through XLA and the two strided ones through taps.
@pytest.mark.parametrize("impl", ["auto"])
def test_hessian_vector_products_equal_dense_hessian(impl):
    with _x64():
        dtype = jnp.float64
        params = _tiny_params(dtype)
        x = _normal(4, (3, 5, 5, 2), dtype)
        y = _normal(5, (3, 2), dtype)
        flat, unravel = ravel_pytree(params)
        ours = _tiny_model(functools.partial(conv2d, impl=impl))
        ref = _tiny_model(lambda a, b, s, p: _ref(a, b, s[0], p))
        f = lambda v: ours(unravel(v), x, y)
        hess = jax.jit(jax.hessian(lambda v: ref(unravel(v), x, y)))(flat)
        assert hess.dtype == jnp.float64
        basis = jnp.eye(flat.size, dtype=dtype)
        fwd_over_rev = jax.jit(jax.vmap(
            lambda v: jax.jvp(jax.grad(f), (flat,), (v,))[1]))
        rev_over_rev = jax.jit(jax.vmap(
            lambda v: jax.grad(lambda p: jnp.vdot(jax.grad(f)(p), v))(flat)))
        # Column by column (a vmap over the basis), both modes.
        np.testing.assert_allclose(fwd_over_rev(basis), hess, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(rev_over_rev(basis), hess, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("impl", ["auto"])
def test_per_example_gradients(impl):
    params = _tiny_params(jnp.float32)
    x = _normal(4, (4, 5, 5, 2))
    y = _normal(5, (4, 2))
    ours = _tiny_model(functools.partial(conv2d, impl=impl))
    ref = _tiny_model(lambda a, b, s, p: _ref(a, b, s[0], p))
    one = lambda loss: lambda p, xi, yi: loss(p, xi[None], yi[None])
    per_ex = jax.jit(jax.vmap(jax.grad(one(ours)), (None, 0, 0)))(params, x, y)
    grad_one = jax.jit(jax.grad(one(ref)))
    loop = [grad_one(params, x[i], y[i]) for i in range(4)]
    chex.assert_trees_all_close(per_ex, jax.tree.map(lambda *a: jnp.stack(a), *loop),
                                atol=1e-5, rtol=1e-5)


def _count(text, op):
    return len(re.findall(r"stablehlo\." + op + r"\b", text))


def test_platform_selection():
    """CPU gets the tap weight gradient; GPU/TPU get XLA's three convs."""
    x, k = _inputs(1, 8)
    grad = jax.jit(jax.grad(_loss(lambda x, k: conv2d(x, k, (2, 2))), (0, 1)))
    cpu = export.export(grad, platforms=["cpu"])(x, k).mlir_module()
    # fwd + input gradient as convolutions, the weight gradient as a dot.
    assert (_count(cpu, "convolution"), _count(cpu, "dot_general")) == (2, 1)
    for platform in ("cuda", "tpu"):
        text = export.export(grad, platforms=[platform])(x, k).mlir_module()
        assert (_count(text, "convolution"), _count(text, "dot_general")) == (3, 0)
    # The GPU path, run here: XLA's own convolution and gradients, unchanged.
    x, k = _inputs(3, 9)
    pads = conv_lib._explicit_padding((9, 9), (3, 3), (2, 2), "SAME")
    f = lambda x, k: conv_lib._conv_xla(x, k, (2, 2), pads)
    chex.assert_trees_all_close(jax.grad(_loss(f), (0, 1))(x, k),
                                jax.grad(_loss(lambda a, b: _ref(a, b, 2, "SAME")),
                                         (0, 1))(x, k), atol=0, rtol=0)


def test_weight_grad_choice_for_resnet_shapes():
    """The measured choice (see the module docstring), from static shapes."""
    choice = lambda size, k, s, cin=64, batch=64: conv_lib._cpu_weight_grad_impl(
        (batch, size, size, cin), (k, k, cin, 64), (s, s),
        conv_lib._explicit_padding((size, size), (k, k), (s, s), "SAME"))
    # XLA's weight gradient over batch chunks of max(8, 512 / output pixels)
    # examples, at most 16 chunks; taps unchunked.
    assert choice(32, 3, 1) == ("xla", 8)      # issue 8's shape
    assert choice(32, 3, 1, batch=128) == ("xla", 8)
    assert choice(32, 3, 1, batch=512) == ("xla", 32)   # 16 chunks at most
    assert choice(8, 3, 1) == ("xla", 8)
    assert choice(4, 3, 1) == ("xla", 32)
    assert choice(4, 3, 1, batch=16) == ("xla", 16)     # one chunk: plain XLA
    assert choice(32, 3, 2) == ("xla", 8)      # 16x16 output
    assert choice(16, 3, 2) == ("taps", 64)    # 8x8 output
    assert choice(8, 3, 2) == ("taps", 64)
    assert choice(32, 1, 2) == ("taps", 64)    # 1x1 shortcut
    assert choice(32, 1, 1) == ("taps", 64)


@pytest.mark.parametrize("batch,size", [(20, 7), (9, 16)])
def test_batch_chunked_weight_gradient_equals_xla(batch, size):
    """Chunks of 11 + 9 and of 8 + 1 examples (uneven last chunk): value,
    both gradients, a jvp and a reverse-over-reverse HVP equal XLA's."""
    x, k = _inputs(3, size, batch=batch)
    pads = conv_lib._explicit_padding((size, size), (3, 3), (1, 1), "SAME")
    method, chunk = conv_lib._cpu_weight_grad_impl(x.shape, k.shape, (1, 1), pads)
    assert method == "xla" and chunk < batch
    assert conv_lib._weight_grad_chunk(batch, size * size) == chunk
    ours = functools.partial(conv2d, strides=(1, 1), padding="SAME")
    ref = functools.partial(_ref, stride=1, padding="SAME")
    cpu = export.export(jax.jit(jax.grad(_loss(ours), (0, 1))), platforms=["cpu"])(x, k)
    # forward, input gradient, and one weight-gradient conv per chunk
    assert _count(cpu.mlir_module(), "convolution") == 2 + -(-batch // chunk)
    # The weight gradient (entries up to ~40) sums 20 x size^2 terms per entry
    # in another order than XLA's: atol 1e-4 is ~2e-6 of its largest entry.
    chex.assert_trees_all_close(jax.jit(_value_and_grads(ours))(x, k),
                                jax.jit(_value_and_grads(ref))(x, k), atol=1e-4, rtol=1e-5)
    tx, tk = _inputs(3, size, batch=batch, seed=3)
    jvp = lambda f: jax.jit(lambda *a: jax.jvp(f, a[:2], a[2:]))(x, k, tx, tk)
    chex.assert_trees_all_close(jvp(ours), jvp(ref), atol=1e-5, rtol=1e-5)
    hvp = lambda f: jax.jit(jax.grad(
        lambda kk: jnp.vdot(jax.grad(_loss(f), 1)(x, kk), tk)))(k)
    chex.assert_trees_all_close(hvp(ours), hvp(ref), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kwargs", [
    dict(features=4, kernel_size=(3, 3)),
    dict(features=5, kernel_size=(1, 1), strides=(2, 2)),
    dict(features=4, kernel_size=(3, 3), strides=(2, 2), padding="VALID", use_bias=False),
    dict(features=3, kernel_size=(5, 5), strides=(2, 2), padding=((2, 1), (2, 2))),
    dict(features=4, kernel_size=(3, 3), dtype=jnp.bfloat16)])
def test_flax_module_matches_linen_conv(kwargs):
    x = _normal(0, (2, 9, 9, 3))
    ours, theirs = Conv(**kwargs), nn.Conv(**kwargs)
    # Same parameter names, shapes and dtypes (shapes only: no sampling).
    shapes = jax.eval_shape(theirs.init, jax.random.key(1), x)
    chex.assert_trees_all_equal_shapes_and_dtypes(
        jax.eval_shape(ours.init, jax.random.key(1), x), shapes)
    leaves, treedef = jax.tree.flatten(shapes)
    params = jax.tree.unflatten(treedef, [
        _normal(i, s.shape, s.dtype, 0.3) for i, s in enumerate(leaves)])
    tol = 3e-2 if "dtype" in kwargs else 1e-5
    value_and_grad = lambda m: jax.jit(lambda p, x: (m.apply(p, x), jax.grad(
        lambda p: jnp.sum(jnp.sin(m.apply(p, x)).astype(jnp.float32)))(p)))
    y, g = value_and_grad(ours)(params, x)
    y_ref, g_ref = value_and_grad(theirs)(params, x)
    assert y.dtype == y_ref.dtype
    chex.assert_trees_all_close(y.astype(jnp.float32), y_ref.astype(jnp.float32),
                                atol=tol, rtol=tol)
    chex.assert_trees_all_close(g, g_ref, atol=tol, rtol=tol)


def test_flax_module_init_and_batch_dims():
    """Same initial values as nn.Conv; extra leading and no batch dimensions."""
    x = _normal(0, (2, 3, 8, 8, 3))
    ours, theirs = Conv(4, (3, 3), (2, 2)), nn.Conv(4, (3, 3), (2, 2))
    params = theirs.init(jax.random.key(1), x)
    chex.assert_trees_all_close(ours.init(jax.random.key(1), x), params)
    for inp in (x, x[0, 0]):
        chex.assert_trees_all_close(ours.apply(params, inp), theirs.apply(params, inp),
                                    atol=1e-5, rtol=1e-5)


def test_invalid_arguments_raise():
    x, k = _inputs(3, 7)
    with pytest.raises(ValueError, match="padding"):
        conv2d(x, k, padding="CIRCULAR")
    with pytest.raises(ValueError, match="impl"):
        conv2d(x, k, impl="fast")
    with pytest.raises(ValueError, match="channels"):
        conv2d(x[..., :2], k)
    with pytest.raises(ValueError, match="strides"):
        conv2d(x, k, strides=(0, 1))
    with pytest.raises(ValueError, match="kernel_size"):
        Conv(4, kernel_size=3).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="empty output"):
        conv2d(x, jnp.ones((9, 9, 3, 4)), padding="VALID")


def test_use_implementation_sets_the_traced_default():
    x = jnp.ones((2, 6, 6, 3), jnp.float32)
    k = jnp.ones((3, 3, 3, 4), jnp.float32)
    traced = lambda: str(jax.make_jaxpr(lambda x, k: conv_lib.conv2d(x, k))(x, k))
    assert "custom_jvp_call" not in traced()  # 3x3 stride 1: 'auto' is XLA's conv
    with conv_lib.use_implementation("taps"):
        assert "custom_jvp_call" in traced()
        with conv_lib.use_implementation("xla"):
            assert "custom_jvp_call" not in traced()
        assert "custom_jvp_call" in traced()
    assert "custom_jvp_call" not in traced()
    with pytest.raises(ValueError, match="impl must be one of"):
        with conv_lib.use_implementation("fast"):
            pass


# Inputs smaller than the kernel (VGG's 2x2 stage on CIFAR): on CPU 'auto' is
# the plain per-tap sum, every derivative by JAX's autodiff.
SMALL_INPUT_CASES = [(3, 1, "SAME", 2), (3, 2, "SAME", 2), (5, 1, "SAME", 3),
                     (3, 1, ((1, 1), (2, 0)), 1)]


@pytest.mark.parametrize("kernel,stride,padding,size", SMALL_INPUT_CASES)
def test_small_inputs_use_plain_taps_and_match_xla(kernel, stride, padding, size):
    x, k = _inputs(kernel, size)
    ours = functools.partial(conv2d, strides=(stride, stride), padding=padding)
    ref = functools.partial(_ref, stride=stride, padding=padding)
    assert "platform_index" in str(jax.make_jaxpr(ours)(x, k))
    if jax.default_backend() == "cpu":  # no XLA convolution left on CPU
        hlo = jax.jit(jax.grad(lambda x, k: ours(x, k).sum(), (0, 1))).lower(x, k)
        assert "convolution" not in hlo.compile().as_text()
    chex.assert_trees_all_close(jax.jit(_value_and_grads(ours))(x, k),
                                jax.jit(_value_and_grads(ref))(x, k),
                                atol=1e-5, rtol=1e-5)
    tx, tk = _inputs(kernel, size, seed=1)
    chex.assert_trees_all_close(jax.jvp(ours, (x, k), (tx, tk)),
                                jax.jvp(ref, (x, k), (tx, tk)), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_small_input_hvp_equals_dense_hessian():
    with _x64():
        dtype = jnp.float64
        x = _normal(7, (2, 2, 2, 3), dtype)
        k0 = _normal(8, (3, 3, 3, 2), dtype, 0.5)
        f = lambda k: jnp.sum(jnp.tanh(conv2d(x, k)) ** 2)
        g = lambda k: jnp.sum(jnp.tanh(_ref(x, k, 1, "SAME")) ** 2)
        flat, unravel = ravel_pytree(k0)
        hess = jax.hessian(lambda v: g(unravel(v)))(flat)
        fv = lambda v: f(unravel(v))
        basis = jnp.eye(flat.size, dtype=dtype)
        fwd_over_rev = jax.vmap(lambda v: jax.jvp(jax.grad(fv), (flat,), (v,))[1])(basis)
        rev_over_rev = jax.vmap(
            lambda v: jax.grad(lambda p: jnp.vdot(jax.grad(fv)(p), v))(flat))(basis)
        np.testing.assert_allclose(fwd_over_rev, hess, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(rev_over_rev, hess, rtol=1e-10, atol=1e-12)


def _assert_jvp_and_hvps_equal(ours, ref, primals, tangents, atol, hvp_atol):
    """The jvp, and both orders of the Hessian-vector product of ``_loss``
    in the direction ``tangents``, equal for ``ours`` and ``ref``."""
    (x, k), (tx, tk) = primals, tangents
    jvp = lambda f: jax.jit(lambda *a: jax.jvp(f, a[:2], a[2:]))(x, k, tx, tk)  # noqa: E731
    chex.assert_trees_all_close(jvp(ours), jvp(ref), atol=atol, rtol=1e-5)
    g = lambda f: jax.grad(_loss(f), (0, 1))  # noqa: E731
    rev_rev = lambda f: jax.jit(jax.grad(  # noqa: E731
        lambda a, b: jnp.vdot(g(f)(a, b)[0], tx) + jnp.vdot(g(f)(a, b)[1], tk), (0, 1)))(x, k)
    fwd_rev = lambda f: jax.jit(  # noqa: E731
        lambda a, b: jax.jvp(g(f), (a, b), (tx, tk))[1])(x, k)
    chex.assert_trees_all_close(rev_rev(ours), rev_rev(ref), atol=hvp_atol, rtol=1e-4)
    chex.assert_trees_all_close(fwd_rev(ours), fwd_rev(ref), atol=hvp_atol, rtol=1e-4)


def test_sequential_chunks_for_large_activations_equal_xla(monkeypatch):
    """Large activations run forward and input gradient in ordered batch chunks.

    The thresholds are lowered so that a small input takes the path: 10
    examples in chunks of 4 + 4 + 2 (uneven), with the weight gradient's own
    chunks too. Value, both gradients, jvp and both HVP orders equal XLA's, and
    the chunks are chained by optimization barriers in the lowered program.
    """
    x, k = _inputs(3, 6, batch=10)
    per_example = 6 * 6 * 3 * 4
    monkeypatch.setattr(conv_lib, "_SEQUENTIAL_ABOVE_BYTES", 5 * per_example)
    monkeypatch.setattr(conv_lib, "_SEQUENTIAL_CHUNK_BYTES", 4 * per_example)
    monkeypatch.setattr(conv_lib, "_SEQUENTIAL_MIN_EXAMPLES", 1)
    assert conv_lib._sequential_chunk(x.shape, 4) == 4
    assert conv_lib._sequential_chunk((5,) + x.shape[1:], 4) == 5  # at the threshold: off
    ours = functools.partial(conv2d, strides=(1, 1), padding="SAME")
    ref = functools.partial(_ref, stride=1, padding="SAME")
    text = export.export(jax.jit(jax.grad(_loss(ours), (0, 1))),
                         platforms=["cpu"])(x, k).mlir_module()
    # forward (2 barriers) and its transpose, the input gradient (2 more)
    assert _count(text, "optimization_barrier") == 4
    chex.assert_trees_all_close(jax.jit(_value_and_grads(ours))(x, k),
                                jax.jit(_value_and_grads(ref))(x, k), atol=1e-5, rtol=1e-5)
    tx, tk = _inputs(3, 6, batch=10, seed=3)
    _assert_jvp_and_hvps_equal(ours, ref, (x, k), (tx, tk), atol=1e-5, hvp_atol=1e-4)


@pytest.mark.parametrize("kernel,strides,padding,size", [
    (3, (2, 2), "SAME", 18), (3, (2, 2), "VALID", 19), (5, (2, 2), ((2, 1), (0, 3)), 20),
    (3, (2, 2), ((-1, 1), (1, 1)), 18), (3, (3, 3), "SAME", 30), (3, (2, 1), "SAME", 17)])
def test_polyphase_input_gradient_equals_xla(kernel, strides, padding, size):
    """Strided kernels with a > 8x8 output take the input gradient per phase.

    Value, both gradients, jvp and both HVP orders equal XLA's, and the
    gradient program has no lhs-dilated convolution (XLA's own input
    gradient of a strided convolution convolves a dilated dy).
    """
    x, k = _inputs(kernel, size)
    pads = conv_lib._explicit_padding((size, size), (kernel, kernel), strides, padding)
    assert conv_lib._polyphase_input_grad(x.shape, k.shape, strides, pads)
    ours = functools.partial(conv2d, strides=strides, padding=padding)
    ref = lambda a, b: lax.conv_general_dilated(a, b, strides, padding,  # noqa: E731
                                                dimension_numbers=DN)
    np.testing.assert_allclose(conv_lib._conv_polyphase(x, k, strides, pads), ref(x, k),
                               atol=2e-5, rtol=1e-5)
    text = export.export(jax.jit(jax.grad(_loss(ours), (0, 1))),
                         platforms=["cpu"])(x, k).mlir_module()
    assert "lhs_dilate" not in text
    assert "lhs_dilate" in export.export(jax.jit(jax.grad(_loss(ref), (0, 1))),
                                         platforms=["cpu"])(x, k).mlir_module()
    chex.assert_trees_all_close(jax.jit(_value_and_grads(ours))(x, k),
                                jax.jit(_value_and_grads(ref))(x, k), atol=1e-4, rtol=1e-5)
    tx, tk = _inputs(kernel, size, seed=3)
    _assert_jvp_and_hvps_equal(ours, ref, (x, k), (tx, tk), atol=1e-4, hvp_atol=1e-3)


def test_polyphase_choice_for_resnet_shapes():
    """Measured crossover (``_polyphase_input_grad``): > 8x8 strided outputs."""
    choice = lambda size, k, s: conv_lib._polyphase_input_grad(
        (64, size, size, 64), (k, k, 64, 128), (s, s),
        conv_lib._explicit_padding((size, size), (k, k), (s, s), "SAME"))
    assert choice(32, 3, 2)                   # 16x16 output
    assert not choice(16, 3, 2)               # 8x8
    assert not choice(32, 1, 2)               # 1x1 shortcut
    assert not choice(32, 3, 1)               # stride 1
    assert choice(224, 7, 2)                  # ImageNet stem
