"""The one convolution every neurojax model uses (NHWC inputs, HWIO kernels).

``conv2d`` computes the same function as ``jax.lax.conv_general_dilated``; what
it changes, on the CPU backend only, is how some weight gradients are
computed (issue 8).

How it is built
---------------
* On GPU/TPU (and any non-CPU backend) the convolution is XLA's, with XLA's own
  gradients, unchanged.
* On CPU the convolution is a ``jax.custom_jvp``: the primal is XLA's forward
  convolution and the tangent rule is written with plain linear ops, so that
  JAX's automatic transpose of the tangent rule *is* the backward pass. The
  part of the tangent that is linear in the kernel is either XLA's convolution
  (its transpose is XLA's weight gradient) or a sum over kernel taps of
  ``dot_general(strided slice of padded x, kernel[i, j])`` (its transpose is one
  matmul per tap, ``x_tap^T @ dy``); the part linear in ``x`` is XLA's
  convolution or, for strided kernels, a sum of stride-1 convolutions over the
  input's phases (its transpose avoids a dilated ``dy``). Because only
  standard primitives appear, every differentiation mode keeps working:
  ``grad``, ``jvp``/``jacfwd``,
  forward-over-reverse and reverse-over-reverse Hessian-vector products,
  ``vmap`` and per-example gradients (``vmap(grad)``).
* The backend is selected by ``jax.lax.platform_dependent``, so one jitted
  function picks per platform when it is lowered.

Which formulation, measured (jax/jaxlib 0.10.2, 2-core AMD EPYC, float32).
First, the flags: jaxlib 0.10.x compiles f32 convolutions into YNNPACK
fusions that run the large ResNet layers on one thread; importing neurojax
turns those off (``neurojax._xla_cpu_flags``), after which XLA's own
convolution uses both cores. At the issue's shape (64x32x32x64 -> 64, 3x3,
stride 1; ``python benchmarks/conv_grad.py``, wall ms) forward 52 -> 29,
input gradient 52 -> 30, weight gradient 91 -> 46. The formulations below
were first chosen from process-CPU-time measurements with YNNPACK on, which
hid that single thread; they were re-measured as whole ResNet-18 training
steps under the flag (wall time, variants interleaved in one process):
batch 64, XLA's plain convolution 1.75 s, per-tap weight gradients alone
1.70 s, plus the batch-chunked weight gradient 1.48 s, plus ordered chunks
1.47 s; batch 128, 3.70 s, -, 3.00 s, 3.02 s. So they stay; the ordered
chunks are neutral under the flag and help without it (YNNPACK on, e.g. a
jaxlib the flag is not set for: 1.09x at batch 128).

* Forward pass: XLA's (im2col and per-tap forms were slower).
* Input gradient: XLA's, except for strided kernels larger than 1x1 with a
  > 8x8 output, where XLA convolves a stride-dilated ``dy``: there the
  x-tangent is written per phase (``_conv_polyphase``), whose transpose is
  one stride-1 input-gradient convolution per phase (32x32x64 -> 128, 3x3
  stride 2: 43 -> 19 ms; ResNet-18 step 1.4% faster at batch 64, 2% at
  128). For stride 1, a flipped-kernel convolution and per-tap scatters were
  slower than XLA's.
* Weight gradient of 1x1 kernels and of strided kernels with a <= 8x8
  output: the tap formulation (``_cpu_weight_grad_impl``), where XLA's
  window-is-the-image convolution has little output (ResNet-18 1x1
  stride-2 shortcuts 11.8 -> 5.7 ms, 4.6 -> 3.7 ms wall at batch 64).
* Other weight gradients: XLA's, over chunks of the batch, summed
  (``_weight_grad_chunk``); in the step this avoids the large transposed
  copies (of recomputed BatchNorm/ReLU activations) that XLA feeds its
  whole-batch weight-gradient convolution.
* Inputs above 16 MiB: forward pass and input gradient over batch chunks in
  order (``_sequential_chunk``, ``_conv_batch_chunks``).

A Winograd F(2x2,3x3) or F(4x4,3x3) convolution written in jnp (2.25x / 4x
fewer multiplies) did not beat XLA's direct one on the ResNet-18 shapes
(``benchmarks/winograd_conv.py``, batch 64): forward 0.9-3.0x XLA's time,
input gradient by autodiff 2.0-2.8x (F(2x2,3x3)) and 6-20x (F(4x4,3x3));
its transforms run as memory-bound fusions, and F(4x4,3x3) has ~1e-5
relative error.

Inputs smaller than the kernel (e.g. VGG's 2x2 stage on CIFAR) are the one
shape where XLA:CPU's forward convolution and input gradient are slow (~50x a
matmul's time, measured at 2x2x512 -> 512); there the CPU path is the plain
per-tap sum ``_conv_taps`` with all derivatives from JAX's autodiff.
"""
import contextlib
import contextvars
import functools
from typing import Any, Iterator, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Padding = Union[str, int, Sequence[Union[int, tuple[int, int]]]]

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
_IMPLS = ("auto", "xla", "taps")
# Trace-time default for ``conv2d(impl=None)``, set by ``use_implementation``.
_DEFAULT_IMPL: contextvars.ContextVar[str] = contextvars.ContextVar("neurojax_conv_impl",
                                                                    default="auto")


@contextlib.contextmanager
def use_implementation(impl: str) -> Iterator[None]:
    """Within the block, convolutions traced with ``impl=None`` use ``impl``.

    Lets a benchmark or a test run a whole model with XLA's plain convolution
    (``'xla'``) or the forced tap path, without editing the model. It affects
    tracing only: functions jitted inside the block keep the choice.
    """
    if impl not in _IMPLS:
        raise ValueError(f"impl must be one of {_IMPLS}, got {impl!r}")
    token = _DEFAULT_IMPL.set(impl)
    try:
        yield
    finally:
        _DEFAULT_IMPL.reset(token)


def _normalize_strides(strides) -> tuple[int, int]:
    if isinstance(strides, int):
        strides = (strides, strides)
    strides = tuple(int(s) for s in strides)
    if len(strides) != 2 or min(strides) < 1:
        raise ValueError(f"strides must be two positive ints, got {strides}")
    return strides


def _explicit_padding(in_hw, kernel_hw, strides, padding):
    """Padding as ((lo, hi), (lo, hi)), with XLA's rules for string paddings."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "SAME_LOWER", "VALID"):
            raise ValueError(
                f"padding must be 'SAME', 'SAME_LOWER', 'VALID', an int or "
                f"(lo, hi) pairs, got {padding!r}")
        pads = lax.padtype_to_pads(in_hw, kernel_hw, strides, padding.upper())
    elif isinstance(padding, int):
        pads = [(padding, padding)] * 2
    else:
        pads = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    if len(pads) != 2 or any(len(p) != 2 for p in pads):
        raise ValueError(f"padding must give two (lo, hi) pairs, got {padding!r}")
    return pads


def _out_size(size, k, s, lo, hi):
    return (size + lo + hi - k) // s + 1


def _conv_xla(x, kernel, strides, pads):
    """XLA's convolution; its autodiff is XLA's gradients (GPU/TPU path)."""
    return lax.conv_general_dilated(x, kernel, strides, pads,
                                    dimension_numbers=_DIMENSION_NUMBERS)


def _conv_taps(x, kernel, strides, pads):
    """The same convolution as a sum over taps of strided-slice matmuls.

    Linear in ``kernel``; JAX transposes it (w.r.t. ``kernel``) into one
    ``x_tap^T @ dy`` matmul per tap, which is the CPU weight gradient used for
    1x1 and small strided outputs.
    """
    n, h, w, c = x.shape
    kh, kw, _, _ = kernel.shape
    (sh, sw), ((ph0, ph1), (pw0, pw1)) = strides, pads
    ho, wo = _out_size(h, kh, sh, ph0, ph1), _out_size(w, kw, sw, pw0, pw1)
    zero = jnp.zeros((), x.dtype)
    # lax.pad also crops for negative explicit padding, as XLA's conv does.
    xp = lax.pad(x, zero, ((0, 0, 0), (ph0, ph1, 0), (pw0, pw1, 0), (0, 0, 0)))
    # Accumulate in float32 (as XLA's CPU conv does) so bfloat16 stays close.
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    kernel_oi = jnp.swapaxes(kernel, 2, 3)
    out = None
    for i in range(kh):
        for j in range(kw):
            tap = lax.slice(xp, (0, i, j, 0),
                            (n, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, c),
                            (1, sh, sw, 1))
            # (C_out, C_in) so that the transpose w.r.t. the kernel is
            # dot(dy, tap) -> (C_out, C_in) with no transpose of dy.
            k_ij = kernel_oi[i, j]
            term = lax.dot_general(tap, k_ij, (((3,), (1,)), ((), ())),
                                   preferred_element_type=acc_dtype)
            out = term if out is None else out + term
    return out.astype(jnp.result_type(x.dtype, kernel.dtype))


def _conv_polyphase(x, kernel, strides, pads):
    """The same strided convolution as a sum of stride-1 convolutions, one per phase.

    ``y[o, p] = sum_{r, q} conv_s1(xp[r::s_h, q::s_w], kernel[r::s_h, q::s_w])[o, p]``
    over the phases ``r < min(s_h, k_h)``, ``q < min(s_w, k_w)`` of the padded
    input ``xp``. Linear in ``x``; JAX transposes it (w.r.t. ``x``) into one
    stride-1 input-gradient convolution per phase plus an interior-padded
    sum, where XLA's own input gradient of a strided convolution convolves
    an ``s_h x s_w``-dilated ``dy`` (mostly zeros): the CPU input gradient of
    3x3 stride-2 convolutions with a > 8x8 output (``_polyphase_input_grad``).
    """
    n, h, w, c = x.shape
    kh, kw = kernel.shape[:2]
    (sh, sw), ((ph0, ph1), (pw0, pw1)) = strides, pads
    ho, wo = _out_size(h, kh, sh, ph0, ph1), _out_size(w, kw, sw, pw0, pw1)
    xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (ph0, ph1, 0), (pw0, pw1, 0), (0, 0, 0)))
    out = None
    for r in range(min(sh, kh)):
        for q in range(min(sw, kw)):
            sub = kernel[r::sh, q::sw]
            a, b = sub.shape[:2]
            # Rows r + s_h * (o + i) for o < ho, i < a (within xp by ho's definition).
            phase = lax.slice(xp, (0, r, q, 0),
                              (n, r + sh * (ho + a - 2) + 1, q + sw * (wo + b - 2) + 1, c),
                              (1, sh, sw, 1))
            term = _conv_xla(phase, sub, (1, 1), ((0, 0), (0, 0)))
            out = term if out is None else out + term
    return out


def _polyphase_input_grad(x_shape, kernel_shape, strides, pads) -> bool:
    """Whether the CPU input gradient uses ``_conv_polyphase``'s transpose.

    Measured (jax 0.10.2 under neurojax's XLA flags, batch 64, 3x3 stride 2,
    SAME, wall ms, XLA's input gradient -> polyphase): 32x32x64 -> 128
    (16x16 output) 43.4 -> 18.8; 16x16x128 -> 256 (8x8) 18.3 -> 16.4;
    8x8x256 -> 512 (4x4) 17.3 -> 21.6. So: strided kernels larger than 1x1
    with more than 8x8 outputs.
    """
    kh, kw = kernel_shape[:2]
    ho = _out_size(x_shape[1], kh, strides[0], *pads[0])
    wo = _out_size(x_shape[2], kw, strides[1], *pads[1])
    return max(strides) > 1 and kh * kw > 1 and ho * wo > 64


def _input_smaller_than_kernel(x_shape, kernel_shape) -> bool:
    """XLA:CPU (jax 0.10.2) runs such convolutions ~50x slower than matmuls.

    Measured (batch 64, 2x2x512 -> 512, 3x3, SAME): XLA forward 545 ms and
    input gradient 551 ms; the plain per-tap sum (``_conv_taps``, every
    derivative by autodiff) 11 ms and 16 ms. VGG's last stage on CIFAR (2x2)
    hits this; 4x4 inputs with 3x3 kernels do not (XLA 30 ms, taps 29 ms).
    """
    return x_shape[1] < kernel_shape[0] or x_shape[2] < kernel_shape[1]


def _cpu_weight_grad_impl(x_shape, kernel_shape, strides, pads) -> tuple[str, int]:
    """``(formulation, examples_per_chunk)`` of the CPU weight gradient, from static shapes.

    Measured on jax 0.10.2 (see the module docstring): XLA's weight gradient
    is slow when the convolution output per tap is small relative to the image
    it sweeps (1x1 kernels, strided kernels with <= 8x8 output): 'taps'. For the
    rest ('xla'), XLA's weight-gradient convolution slows down superlinearly
    with the batch (32x32x64 -> 64 at batch 128: 3.3x its batch-64 time), so it
    runs over chunks of the batch whose gradients are summed:
    ``_weight_grad_chunk``.
    """
    n, kh, kw = x_shape[0], kernel_shape[0], kernel_shape[1]
    ho = _out_size(x_shape[1], kh, strides[0], *pads[0])
    wo = _out_size(x_shape[2], kw, strides[1], *pads[1])
    if kh * kw == 1:
        return "taps", n
    if max(strides) > 1 and ho * wo <= 64:
        return "taps", n
    return "xla", _weight_grad_chunk(n, ho * wo)


# Rows (examples x output pixels) of one weight-gradient chunk, and the most
# chunks one convolution is split into (each is a separate op in the program).
_CHUNK_ROWS = 512
_MIN_CHUNK_EXAMPLES = 8
_MAX_CHUNKS = 16


def _weight_grad_chunk(batch: int, out_pixels: int) -> int:
    """Examples per chunk of XLA's CPU weight gradient.

    ``dW = sum_chunks dW(x_chunk, dy_chunk)`` is exact up to float summation
    order. Measured (jax 0.10.2, 2 cores, process CPU ms, unchunked -> chunks
    of this size) for the ResNet-18 CIFAR 3x3 layers at batch 128: 32x32x64
    299 -> 159, 16x16x128 273 -> 139, 8x8x256 191 -> 106, 32x32x64 -> 128
    stride 2 211 -> 130, 4x4x512 139 -> 114; at batch 64 the same layers gain
    10-25%. Chunks of ``max(8, 512 / (H_out W_out))`` examples were the best
    or within noise of it in every row; at most 16 chunks.
    """
    return _bounded_chunk(batch, max(_MIN_CHUNK_EXAMPLES, -(-_CHUNK_ROWS // max(out_pixels, 1))),
                          _MAX_CHUNKS)


def _bounded_chunk(batch: int, wanted: int, max_chunks: int) -> int:
    """``wanted`` examples per chunk, raised to give at most ``max_chunks``
    chunks, and at most the whole batch."""
    return min(max(wanted, -(-batch // max_chunks)), batch)


# Sequential batch chunks for large activations (forward and input gradient).
_SEQUENTIAL_ABOVE_BYTES = 16 * 2 ** 20
_SEQUENTIAL_CHUNK_BYTES = 8 * 2 ** 20
_SEQUENTIAL_MIN_EXAMPLES = 16
_SEQUENTIAL_MAX_CHUNKS = 8


def _sequential_chunk(x_shape, itemsize: int) -> int:
    """Examples per chunk of the CPU forward pass and input gradient.

    XLA:CPU's forward and input-gradient convolutions slow down once the
    activations outgrow the cache: 32x32x64 -> 64, 3x3, 0.87 ms per example
    at batch 16-64 but 1.26 ms at batch 128 (32 MiB of input), while
    16x16x128 -> 128 stays at 0.43 ms. Above 16 MiB of input, the batch is
    split into chunks of about 8 MiB (at least 16 examples, at most 8 chunks)
    that run one after another (``_conv_batch_chunks(..., in_order=True)``);
    measured at batch 128, 32x32x64: input gradient 151 -> 89 ms, forward
    152 -> 125 ms.
    """
    n = x_shape[0]
    per_example = itemsize * x_shape[1] * x_shape[2] * x_shape[3]
    if n * per_example <= _SEQUENTIAL_ABOVE_BYTES:
        return n
    wanted = max(_SEQUENTIAL_MIN_EXAMPLES, _SEQUENTIAL_CHUNK_BYTES // max(per_example, 1))
    return _bounded_chunk(n, wanted, _SEQUENTIAL_MAX_CHUNKS)


def _conv_batch_chunks(x, kernel, strides, pads, chunk, *, in_order: bool = False,
                       conv=_conv_xla):
    """``conv`` (XLA's convolution) over consecutive batch chunks, concatenated.

    The same function as ``_conv_xla``. Its transpose with respect to
    ``kernel`` is a sum of per-chunk weight-gradient convolutions. With
    ``in_order``, each chunk's input passes through ``lax.optimization_barrier``
    together with the previous chunk's output, so XLA cannot run the chunks
    concurrently (which would bring back the large working set); the barrier
    transposes to a barrier on the cotangents, so the transposed program (the
    input gradient) runs its chunks in (reverse) order too.
    """
    n = x.shape[0]
    if chunk >= n:
        return conv(x, kernel, strides, pads)
    outputs = []
    for start in range(0, n, chunk):
        part = lax.slice_in_dim(x, start, min(start + chunk, n))
        if in_order and outputs:
            part, outputs[-1] = lax.optimization_barrier((part, outputs[-1]))
        outputs.append(conv(part, kernel, strides, pads))
    return jnp.concatenate(outputs, axis=0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _conv_cpu(x, kernel, strides, pads, plan):
    """XLA's forward conv with a tangent rule whose transpose is the fast VJP.

    ``plan``: ``(formulation, examples_per_chunk, sequential_chunk,
    polyphase)``: the weight gradient's ``_cpu_weight_grad_impl`` ('taps'
    ignores the chunk), ``_sequential_chunk`` for the forward pass and the
    input gradient, and ``_polyphase_input_grad``.
    """
    return _conv_batch_chunks(x, kernel, strides, pads, plan[2], in_order=True)


def _conv_cpu_jvp(strides, pads, plan, primals, tangents):
    x, kernel = primals
    tx, tk = tangents
    method, chunk, sequential, polyphase = plan
    y = _conv_batch_chunks(x, kernel, strides, pads, sequential, in_order=True)
    t = None
    if not isinstance(tx, jax.custom_derivatives.SymbolicZero):
        # Its transpose is the input gradient: XLA's, or per phase for
        # strided kernels, chunk by chunk in order for large activations.
        t = _conv_batch_chunks(tx, kernel, strides, pads, sequential, in_order=True,
                               conv=_conv_polyphase if polyphase else _conv_xla)
    if not isinstance(tk, jax.custom_derivatives.SymbolicZero):
        if method == "taps":
            # checkpoint: keep x (not nine strided slices of it) as the
            # residual; the slices are recomputed in the backward pass.
            tw = jax.checkpoint(_conv_taps, static_argnums=(2, 3))(
                x, tk, strides, pads)
        else:
            tw = _conv_batch_chunks(x, tk, strides, pads, chunk)
        t = tw if t is None else t + tw
    if t is None:
        t = jnp.zeros_like(y)
    return y, t.astype(y.dtype)


_conv_cpu.defjvp(_conv_cpu_jvp, symbolic_zeros=True)


def conv2d(x: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1),
           padding: Padding = "SAME", *, impl: str | None = None) -> jax.Array:
    """2-D convolution, ``x`` NHWC, ``kernel`` HWIO, returns NHWC.

    Equal to ``jax.lax.conv_general_dilated(x, kernel, strides, padding,
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))`` in value and in every
    derivative.

    Args:
      x: input, shape (N, H, W, C_in).
      kernel: shape (KH, KW, C_in, C_out).
      strides: (sh, sw) or one int.
      padding: 'SAME', 'SAME_LOWER', 'VALID', an int, or ((lo, hi), (lo, hi)).
      impl: ``None`` (default): the innermost ``use_implementation`` block's
        choice, else 'auto'. 'auto': XLA everywhere except on the CPU backend, where
        the weight gradient uses the formulation measured fastest for this
        shape; 'xla': XLA's convolution and gradients on every backend;
        'taps': force the per-tap weight gradient on every backend (for
        benchmarks and tests).
    """
    if x.ndim != 4 or kernel.ndim != 4:
        raise ValueError(f"x must be NHWC and kernel HWIO (4-D), got shapes "
                         f"{x.shape} and {kernel.shape}")
    if x.shape[3] != kernel.shape[2]:
        raise ValueError(f"x has {x.shape[3]} channels but kernel expects "
                         f"{kernel.shape[2]} (kernel shape {kernel.shape})")
    impl = _DEFAULT_IMPL.get() if impl is None else impl
    if impl not in _IMPLS:
        raise ValueError(f"impl must be one of {_IMPLS}, got {impl!r}")
    strides = _normalize_strides(strides)
    pads = _explicit_padding(x.shape[1:3], kernel.shape[:2], strides, padding)
    for size, k, s, (lo, hi) in zip(x.shape[1:3], kernel.shape[:2], strides, pads):
        if _out_size(size, k, s, lo, hi) < 1:
            raise ValueError(f"empty output: input {x.shape}, kernel "
                             f"{kernel.shape}, strides {strides}, padding {pads}")
    if impl == "xla":
        return _conv_xla(x, kernel, strides, pads)
    if impl == "taps":
        return _conv_cpu(x, kernel, strides, pads, ("taps", x.shape[0], x.shape[0], False))
    if _input_smaller_than_kernel(x.shape, kernel.shape):
        # Plain per-tap sum on CPU: forward, both gradients and every higher
        # derivative are matmuls and pads, derived by JAX's own autodiff.
        return lax.platform_dependent(
            x, kernel,
            cpu=lambda x, k: _conv_taps(x, k, strides, pads),
            default=lambda x, k: _conv_xla(x, k, strides, pads))
    plan = (*_cpu_weight_grad_impl(x.shape, kernel.shape, strides, pads),
            _sequential_chunk(x.shape, jnp.dtype(x.dtype).itemsize),
            _polyphase_input_grad(x.shape, kernel.shape, strides, pads))
    if plan == ("xla", x.shape[0], x.shape[0], False):
        # The CPU fast path would be XLA's own conv: skip the indirection.
        return _conv_xla(x, kernel, strides, pads)
    return lax.platform_dependent(
        x, kernel,
        cpu=lambda x, k: _conv_cpu(x, k, strides, pads, plan),
        default=lambda x, k: _conv_xla(x, k, strides, pads))


class Conv(nn.Module):
    """Drop-in for ``flax.linen.Conv`` (same parameter names and shapes).

    Inputs are (..., H, W, C): leading batch dimensions are flattened, and an
    unbatched (H, W, C) input is allowed, as in ``flax.linen.Conv``.
    """
    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    padding: Padding = "SAME"
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros

    @nn.compact
    def __call__(self, x):
        if isinstance(self.kernel_size, int) or len(self.kernel_size) != 2:
            raise ValueError(f"Conv.kernel_size must be (kh, kw), got {self.kernel_size!r}")
        kh, kw = self.kernel_size
        kernel = self.param("kernel", self.kernel_init,
                            (kh, kw, x.shape[-1], self.features), self.param_dtype)
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        batch_shape = x.shape[:-3]
        x4 = x.reshape((-1,) + x.shape[-3:])
        y = conv2d(x4, kernel, self.strides, self.padding)
        y = y.reshape(batch_shape + y.shape[1:])
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            y = y + bias.astype(y.dtype)
        return y
