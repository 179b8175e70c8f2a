"""Mixed precision: every model family with a bfloat16 compute dtype.

What ``dtype='bfloat16'`` must mean (``config.model.dtype``): parameters stay
float32 (the same values as the float32 model's initialisation), every
matmul and convolution runs on bfloat16 operands, BatchNorm statistics are
computed and kept in float32, and the model's output (logits, features,
embeddings) is float32, close to the float32 model's with the same
variables. Whether the computation really is bfloat16 is read from the
program (the dtypes of every ``dot_general`` / ``conv_general_dilated``), so
a float32-everywhere implementation fails here, not only a wrong one.
"""
import collections
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.models import (COMPUTE_DTYPES, MLP, Projector, build_ssl_network, get_model,
                             resolve_dtype)
from tests.models._helpers import key, randn, random_variables

# name -> (model for a dtype, input shape, [(BatchNorm input layer, BatchNorm layer)])
FAMILIES = {
    "mlp": (lambda dt: get_model("mlp", widths=(32, 32), num_outputs=10, dtype=dt),
            (8, 8, 8, 1), []),
    "deep_linear": (lambda dt: get_model("deep_linear", widths=(16, 16), num_outputs=10,
                                         dtype=dt), (8, 8, 8, 1), []),
    "small_cnn": (lambda dt: get_model("small_cnn", widths=(8, 16), hidden=32,
                                       batch_norm=True, dtype=dt), (8, 8, 8, 1),
                  [("conv_0", "bn_0"), ("conv_1", "bn_1")]),
    "vgg11": (lambda dt: get_model("vgg11", width_factor=1 / 16, dtype=dt), (8, 32, 32, 3),
              [("conv_0", "bn_0"), ("conv_7", "bn_7")]),
    "resnet_basic": (lambda dt: get_model("resnet", stage_sizes=(1, 1), block_cls="basic",
                                          width=0.125, dtype=dt), (4, 8, 8, 3),
                     [("stem/conv", "stem/bn"), ("stage2_block1/conv2", "stage2_block1/bn2"),
                      ("stage2_block1/proj_conv", "stage2_block1/proj_bn")]),
    "resnet_bottleneck": (lambda dt: get_model("resnet", stage_sizes=(1, 1),
                                               block_cls="bottleneck", width=0.125, dtype=dt),
                          (4, 8, 8, 3), [("stage1_block1/conv3", "stage1_block1/bn3")]),
    "projector": (lambda dt: Projector(output_dim=16, dtype=dt), (8, 32),
                  [("dense_0", "bn_0")]),
    "ssl_network": (lambda dt: build_ssl_network("small_cnn", {"output_dim": 16}, widths=(8,),
                                                 hidden=None, batch_norm=True,
                                                 global_pool=True, dtype=dt),
                    (8, 8, 8, 3), [("encoder/conv_0", "encoder/bn_0"),
                                   ("projector/dense_0", "projector/bn_0")]),
}
MATMULS = ("dot_general", "conv_general_dilated")


def _matmul_operand_dtypes(closed_jaxpr) -> collections.Counter:
    """(op, operand dtypes) of every dot_general / conv in the program, nested
    jaxprs (jit, custom_jvp, platform-dependent branches, scans) included."""
    found = collections.Counter()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in MATMULS:
                found[(eqn.primitive.name, tuple(str(v.aval.dtype) for v in eqn.invars))] += 1
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    if hasattr(sub, "eqns"):
                        walk(sub)
                    elif hasattr(getattr(sub, "jaxpr", None), "eqns"):
                        walk(sub.jaxpr)

    walk(closed_jaxpr.jaxpr)
    return found


def _apply(model, variables, x, train):
    """Output (and new batch_stats, {} without BatchNorm) in eval or training mode."""
    if train and "batch_stats" in variables:
        out, state = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return out, state["batch_stats"]
    return model.apply(variables, x, train=train), {}


def _both_modes(model):
    """``(variables, x) -> (eval output, (train output, new batch_stats))``."""
    return lambda v, x: (_apply(model, v, x, False)[0], _apply(model, v, x, True))


def _compute_dtypes(model):
    if hasattr(model, "encoder"):  # SSLNetwork: encoder and projector
        return {model.encoder.dtype, model.projector.dtype}
    return {model.dtype}


@functools.lru_cache(maxsize=None)
def _variables(name):
    """Random float32 variables, drawn in NumPy (no initialiser to compile),
    with running statistics that make evaluation-mode BatchNorm no identity."""
    make, shape, _ = FAMILIES[name]
    return random_variables(make("float32"), shape, seed=2), randn(*shape, seed=1)


@pytest.mark.parametrize("name", FAMILIES)
def test_parameters_stay_float32(name):
    make, shape, _ = FAMILIES[name]
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    init16 = jax.eval_shape(make("bfloat16").init, key(3), x)  # shapes only: no compute
    assert {a.dtype for a in jax.tree.leaves(init16)} == {jnp.dtype(jnp.float32)}
    chex.assert_trees_all_equal_shapes_and_dtypes(
        init16, jax.eval_shape(make("float32").init, key(3), x))


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "vgg11" else n
                                  for n in FAMILIES])  # VGG-11: 6 s, under `-m slow`
def test_bfloat16_computes_in_bfloat16_and_returns_float32(name):
    make, _, bn_pairs = FAMILIES[name]
    variables, x = _variables(name)
    model16, model32 = make("bfloat16"), make("float32")
    assert _compute_dtypes(model16) == {jnp.bfloat16}  # the name became a jnp dtype
    eval16, (train16, stats16) = jax.jit(_both_modes(model16))(variables, x)
    eval32, (train32, stats32) = jax.jit(_both_modes(model32))(variables, x)
    for train, out16, out32 in ((False, eval16, eval32), (True, train16, train32)):
        assert out16.dtype == jnp.float32, (train, out16.dtype)
        scale = float(jnp.max(jnp.abs(out32)))
        err = float(jnp.max(jnp.abs(out16 - out32)))
        # bfloat16 has 8 mantissa bits: ~0.3-3% of the output's scale here
        assert err <= 0.05 * scale, (train, err, scale)
    assert {a.dtype for a in jax.tree.leaves(stats16)} <= {jnp.dtype(jnp.float32)}
    assert bool(stats16) == bool(bn_pairs)
    chex.assert_trees_all_close(stats16, stats32, rtol=0.05, atol=0.02)

    ops16 = _matmul_operand_dtypes(jax.make_jaxpr(_both_modes(model16))(variables, x))
    ops32 = _matmul_operand_dtypes(jax.make_jaxpr(_both_modes(model32))(variables, x))
    assert ops16 and {dtypes for _, dtypes in ops16} == {("bfloat16", "bfloat16")}, ops16
    assert {dtypes for _, dtypes in ops32} == {("float32", "float32")}, ops32
    assert sum(ops16.values()) == sum(ops32.values())  # every one of them


def _loss_of_params(model, variables, x):
    def loss(params):
        out, _ = _apply(model, {**variables, "params": params}, x, True)
        return jnp.mean(jnp.sin(out))
    return loss


@pytest.mark.parametrize("name", FAMILIES)
def test_bfloat16_gradients_are_float32_and_computed_from_bfloat16(name):
    """Traced, not run: the gradient is float32 (as the parameters) and the
    backward pass's matmuls and convolutions take bfloat16 operands."""
    variables, x = _variables(name)
    grad = jax.grad(_loss_of_params(FAMILIES[name][0]("bfloat16"), variables, x))
    chex.assert_trees_all_equal_shapes_and_dtypes(jax.eval_shape(grad, variables["params"]),
                                                  variables["params"])
    ops = _matmul_operand_dtypes(jax.make_jaxpr(grad)(variables["params"]))
    # The CPU per-tap weight gradient of neurojax.models.conv accumulates in
    # float32, so its transpose multiplies a float32 cotangent with bfloat16
    # taps (VGG's 2x2 stages, ResNet's 1x1 strided shortcuts): one bfloat16
    # operand at least, never float32 x float32.
    assert ops and all("bfloat16" in dtypes for _, dtypes in ops), ops


@pytest.mark.parametrize("name", ["mlp", "small_cnn", "ssl_network"])
def test_bfloat16_gradients_are_close_to_float32(name):
    variables, x = _variables(name)
    make = FAMILIES[name][0]
    g16, g32 = (jax.jit(jax.grad(_loss_of_params(make(dt), variables, x)))(variables["params"])
                for dt in ("bfloat16", "float32"))
    norm = lambda tree: float(jnp.sqrt(sum(jnp.sum(leaf ** 2) for leaf in jax.tree.leaves(tree))))
    # relative error of the whole gradient, measured 0.4% (mlp), 3.6% (small
    # CNN) and 13% (SSL network: BatchNorm over 8 examples, whose backward
    # pass cancels; the first layers' gradients are off by 20-70%)
    assert norm(jax.tree.map(jnp.subtract, g16, g32)) <= 0.25 * norm(g32)


@pytest.mark.parametrize("name", ["small_cnn", pytest.param("vgg11", marks=pytest.mark.slow),
                                  "resnet_basic", "projector", "ssl_network"])
def test_batchnorm_statistics_are_computed_in_float32(name):
    """The running statistics equal the float32 mean and (E[x^2] - E[x]^2)
    variance of the BatchNorm's bfloat16 input, to float32 round-off
    (measured <= 4e-6 of the input's RMS); reduced in bfloat16 they are off by
    1e-3 to 3e-2 of it. Run op by op (``disable_jit``): compiled, XLA may
    skip the rounding of the input to bfloat16 inside the fused statistics
    (excess precision), and the captured input would not be what was reduced."""
    make, _, pairs = FAMILIES[name]
    sources = {source for source, _ in pairs}
    variables, x = _variables(name)
    with jax.disable_jit():
        _, state = make("bfloat16").apply(
            variables, x, train=True, mutable=["batch_stats", "intermediates"],
            capture_intermediates=lambda m, method: (method == "__call__"
                                                     and "/".join(m.path) in sources))
    momentum = 0.9
    for source, bn in pairs:
        node = state["intermediates"]
        for part in source.split("/"):
            node = node[part]
        bn_input = node["__call__"][0]
        assert bn_input.dtype == jnp.bfloat16
        h = np.asarray(bn_input, np.float64).reshape(-1, bn_input.shape[-1])
        mean = h.mean(0)
        var = np.maximum((h * h).mean(0) - mean ** 2, 0.0)
        rms = np.sqrt((h * h).mean(0)) + 1e-12
        old, new = variables["batch_stats"], state["batch_stats"]
        for part in bn.split("/"):
            old, new = old[part], new[part]
        assert new["mean"].dtype == new["var"].dtype == jnp.float32
        for field, batch_value in (("mean", mean), ("var", var)):
            # the batch's statistic, read back from the running average
            got = (np.asarray(new[field], np.float64)
                   - momentum * np.asarray(old[field], np.float64)) / (1 - momentum)
            err = float(np.max(np.abs(got - batch_value) / rms))
            assert err < 3e-5, (bn, field, err)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_other_compute_dtypes(dtype):
    variables, x = _variables("small_cnn")
    model = FAMILIES["small_cnn"][0](dtype)
    run = lambda v, x: _apply(model, v, x, True)  # noqa: E731
    out, stats = jax.jit(run)(variables, x)
    assert out.dtype == jnp.float32
    assert {a.dtype for a in jax.tree.leaves(stats)} == {jnp.dtype(jnp.float32)}
    ops = _matmul_operand_dtypes(jax.make_jaxpr(run)(variables, x))
    assert {dtypes for _, dtypes in ops} == {(dtype, dtype)}


def test_dtype_names_and_errors():
    assert COMPUTE_DTYPES == ("float32", "bfloat16", "float16")
    for name in COMPUTE_DTYPES:
        assert resolve_dtype(name) is getattr(jnp, name)
        assert resolve_dtype(getattr(jnp, name)) is getattr(jnp, name)
        assert resolve_dtype(np.dtype(name)) is getattr(jnp, name)
    assert resolve_dtype(None) is None
    for bad in ("bf16", "float64", "int8", "", 16, True, jnp.float64, jnp.int32):
        with pytest.raises(ValueError, match=r"config\.model\.dtype must be one of"):
            resolve_dtype(bad, "config.model.dtype")
    with pytest.raises(ValueError, match="dtype must be one of"):
        get_model("resnet18", dtype="bf16")
    with pytest.raises(ValueError, match="dtype must be one of"):
        Projector(dtype="float64")
    with pytest.raises(ValueError, match="dtype must be one of"):
        MLP(dtype=jnp.int8)


def test_ssl_projector_follows_the_encoder_dtype():
    net = build_ssl_network("mlp", {"output_dim": 8}, widths=(16,), dtype="bfloat16")
    assert net.encoder.dtype == net.projector.dtype == jnp.bfloat16
    own = build_ssl_network("mlp", {"output_dim": 8, "dtype": "float32"}, widths=(16,),
                            dtype="bfloat16")
    assert own.encoder.dtype == jnp.bfloat16 and own.projector.dtype == jnp.float32
    assert build_ssl_network("mlp", {"output_dim": 8}, widths=(16,)).projector.dtype is None
    x = randn(4, 8, 8, 1)
    variables = jax.jit(net.init)(key(0), x)
    h = jax.jit(lambda v, x: net.apply(v, x, method="features"))(variables, x)
    assert h.dtype == jnp.float32 and h.shape == (4, 16)
