"""Read any intermediate layer's output without editing the model.

Built on Flax's ``capture_intermediates`` (``Module.apply``): every submodule
whose path passes a filter has the output of its ``__call__`` recorded. Paths
are module names joined by '/', e.g. ``'stage2_block1/conv1'`` in a ResNet or
``'act_0'`` in an MLP (models in this package wrap activations and pools as
modules so post-activation features have names too). ``layer_names`` lists
them.

Example::

    model = get_model('resnet18', num_classes=10)
    variables = model.init(key, x)
    layer_names(model, x)[:3]            # ['stem', 'stem/conv', 'stem/bn']
    feats = intermediate_features(model, variables, x, filter=r'stage\\d_block2')
    feats['stage4_block2'].shape         # (batch, 4, 4, 512)

Filters (``filter=``):

* ``None``: every submodule (the root model's own output is not included);
* a string: paths equal to it or matching it in full as a regular
  expression (``re.fullmatch``), e.g. ``'head'`` or ``r'stage\\d_block\\d'``;
* a compiled ``re.Pattern``: ``fullmatch`` on the path;
* a sequence of strings / patterns: any of them;
* a callable ``(path: str, module: nn.Module) -> bool``.

The root module has path ``''``; a filter that matches ``''`` includes the
model output. A module called more than once (weight sharing) appears as
``path``, ``path:1``, ``path:2``, ... in call order.

Both functions are pure and work under ``jax.jit`` (close over ``filter``)
and ``jax.eval_shape`` (shapes without compute).
"""
import re
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import flax.linen as nn
import jax

FeatureFilter = Union[None, str, re.Pattern, Sequence[Union[str, re.Pattern]],
                      Callable[[str, nn.Module], bool]]


def _path_str(module: nn.Module) -> str:
    return "/".join(str(p) for p in module.path)


def _make_predicate(filter: FeatureFilter) -> Callable[[str, nn.Module], bool]:
    if filter is None:
        return lambda path, module: path != ""
    if isinstance(filter, (str, re.Pattern)):
        filter = [filter]
    if callable(filter):
        return filter
    if not isinstance(filter, Sequence):
        raise ValueError(f"filter must be None, a string, a regex, a sequence of "
                         f"them or a callable, got {filter!r}")
    patterns = []
    for f in filter:
        if isinstance(f, str):
            try:
                patterns.append((f, re.compile(f)))
            except re.error:
                patterns.append((f, None))
        elif isinstance(f, re.Pattern):
            patterns.append((None, f))
        else:
            raise ValueError(f"filter entries must be strings or regexes, got {f!r}")

    def predicate(path: str, module: nn.Module) -> bool:
        return any(path == s or (p is not None and p.fullmatch(path))
                   for s, p in patterns)
    return predicate


def intermediate_features(model: nn.Module, variables: Mapping[str, Any],
                          x: Any, *, filter: FeatureFilter = None,
                          train: bool = False, **apply_kwargs: Any
                          ) -> dict[str, Any]:
    """Outputs of the model's submodules on input ``x``, keyed by path.

    Args:
        model: a Linen module with ``__call__(x, train=...)``.
        variables: its variables (``params`` and, if any, ``batch_stats``).
        x: the input batch.
        filter: which modules to record (see the module docstring).
        train: passed to the model. With ``train=True`` BatchNorm normalises
            with batch statistics; the updated ``batch_stats`` are discarded.
        **apply_kwargs: forwarded to ``model.apply`` (e.g. ``rngs``).

    Returns:
        ``{path: output}`` in the order the modules finished (so a block's
        children come before the block).
    """
    predicate = _make_predicate(filter)
    order: list[str] = []

    def capture(module: nn.Module, method_name: str) -> bool:
        if method_name != "__call__":
            return False
        path = _path_str(module)
        keep = bool(predicate(path, module))
        if keep:
            order.append(path)
        return keep

    mutable = ["intermediates", "batch_stats"] if train else ["intermediates"]
    _, state = model.apply(variables, x, train=train, capture_intermediates=capture,
                           mutable=mutable, **apply_kwargs)
    captured = state.get("intermediates", {})
    out: dict[str, Any] = {}
    seen: dict[str, int] = {}
    for path in order:
        i = seen.get(path, 0)
        seen[path] = i + 1
        if i > 0:
            continue
        node = captured
        for part in path.split("/") if path else []:
            node = node[part]
        for k, value in enumerate(node["__call__"]):
            out[path if k == 0 else f"{path}:{k}"] = value
    return out


def layer_names(model: nn.Module, x: Any, variables: Optional[Mapping[str, Any]]
                = None, *, train: bool = False) -> list[str]:
    """Paths of all submodules of ``model`` on input ``x``, in call order.

    Costs no compute: it traces the model with ``jax.eval_shape``, so ``x``
    can be a ``jax.ShapeDtypeStruct``. If ``variables`` is ``None`` the model
    is initialised abstractly (with a fixed key) to obtain them.
    """
    names: list[str] = []

    def record(next_fun, args, kwargs, context):
        if context.method_name == "__call__":
            path = _path_str(context.module)
            if path and path not in names:
                names.append(path)
        return next_fun(*args, **kwargs)

    def run(variables, x):
        if variables is None:
            variables = model.init(jax.random.key(0), x)
        with nn.intercept_methods(record):
            model.apply(variables, x, train=train,
                        mutable=["batch_stats"] if train else False)
        return None

    jax.eval_shape(run, variables, x)
    return names
