"""The learning-dynamics toolkit's experiments: each item against its closed form.

Run (PNG + JSON per part, and ``dynamics_{full,quick}.json`` with every
check):

    python -m neurojax.analysis.dynamics --outdir DIR [--quick] [--parts linear,pruning]

The parts, each a thin recipe over library code (``neurojax.metrics``,
``neurojax.optim``), with its own figure ``<part>.png``:

* ``linear`` (``dynamics_linear``): lambda-balanced deep linear networks
  (Dominé et al. 2025; Saxe et al. 2014 at lambda = 0) against their exact
  solution, the conserved quantity's drift with the step size, and rich vs
  lazy learning with unbalanced initialisations (Kunin et al. 2024).
* ``symmetry`` (``dynamics_symmetry``): translation, scale and rescale
  symmetries and their discrete-time conservation laws under SGD, weight
  decay, momentum and Adam (Kunin et al. 2021; Tanaka & Kunin 2021).
* ``pruning`` (``dynamics_pruning``): SynFlow, SNIP, GraSP, magnitude and
  random pruning at initialisation (Tanaka et al. 2020), with layer collapse.
* ``collapse`` (``dynamics_collapse``): invariant sets of SGD and stochastic
  collapse (Chen et al. 2023).
* ``limiting`` (``dynamics_limiting``): the limiting dynamics of SGD (Kunin
  et al. 2021): stationary covariance and anomalous diffusion.
* ``lae`` (``dynamics_lae``): regularised linear autoencoders (Kunin et al.
  2019), and the quasi-homogeneous max-margin illustration (asymptotic only).

Every part returns ``checks``: ``{name, measured, predicted, rel_error}`` for
each comparison with a closed form; this driver gathers them, prefixed by
the part, in one table.
"""
from __future__ import annotations

import importlib
import pathlib
import time
from typing import Optional, Sequence

import jax

from neurojax.analysis import outputs
from neurojax.analysis.outputs import jsonable, write_json

PARTS = {"linear": "neurojax.analysis.dynamics_linear",
         "symmetry": "neurojax.analysis.dynamics_symmetry",
         "pruning": "neurojax.analysis.dynamics_pruning",
         "collapse": "neurojax.analysis.dynamics_collapse",
         "limiting": "neurojax.analysis.dynamics_limiting",
         "lae": "neurojax.analysis.dynamics_lae"}


def check_parts(parts: Sequence[str]) -> tuple[str, ...]:
    """``parts`` as a tuple; ``ValueError`` naming the known ones otherwise."""
    return outputs.check_parts(parts, PARTS)


def run(outdir: str, *, quick: bool = False, parts: Sequence[str] = tuple(PARTS),
        data_dir: Optional[str] = None) -> dict:
    """Runs ``parts`` (each writes ``<part>.png`` into ``outdir``) and writes
    ``dynamics_{full,quick}.json``: every part's result, its seconds, its
    command, and all checks in one list (``part/name``). Parts not rerun keep
    their entries from an existing file in ``outdir``, so one part can be
    rerun (e.g. longer) without repeating the others."""
    parts = check_parts(parts)
    out = pathlib.Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    name = "quick" if quick else "full"
    path = out / f"dynamics_{name}.json"
    results: dict = {"quick": quick, "parts": {}, "seconds": {}, "commands": {}}
    for part in parts:
        module = importlib.import_module(PARTS[part])
        kwargs = {"data_dir": data_dir} if part == "pruning" and data_dir else {}
        t0 = time.time()
        result = module.run(out, quick=quick, **kwargs)
        results["seconds"][part] = round(time.time() - t0, 1)
        results["parts"][part] = result
        results["commands"][part] = ("python -m neurojax.analysis.dynamics --outdir DIR"
                                     + (" --quick" if quick else "") + f" --parts {part}")
        print(f"{part}: {results['seconds'][part]} s, {len(result.get('checks', []))} checks",
              flush=True)
    # a rerun of some parts keeps the other parts' results already in the file
    results = outputs.merge_parts(str(path), results, PARTS)
    results["checks"] = [{**check, "name": f"{part}/{check['name']}"}
                         for part, result in results["parts"].items()
                         for check in result.get("checks", [])]
    results["devices"] = str(jax.devices()[0].platform)
    write_json(jsonable(results), str(path), digits=6)
    print(format_checks(results["checks"]))
    return results


def format_checks(checks: Sequence[dict]) -> str:
    """The checks as a fixed-width table (measured, predicted, relative error)."""
    width = max([len(c["name"]) for c in checks] + [5])
    lines = [f"{'check':<{width}}  {'measured':>12}  {'predicted':>12}  {'rel. error':>10}"]
    for c in checks:
        lines.append(f"{c['name']:<{width}}  {c['measured']:>12.5g}  {c['predicted']:>12.5g}  "
                     f"{c['rel_error']:>10.2e}")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
    from absl import app, flags
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    try:
        parts = check_parts(f.parts)
    except ValueError as e:
        raise app.UsageError(str(e))
    run(f.outdir, quick=f.quick, parts=parts, data_dir=f.data_dir)


def _define_flags() -> None:
    from absl import flags
    flags.DEFINE_string("outdir", None, "Where the PNGs and dynamics_{full,quick}.json go.")
    flags.DEFINE_bool("quick", False, "CI size (seconds per part; numbers not meaningful).")
    flags.DEFINE_list("parts", list(PARTS), f"Which parts, comma-separated: {list(PARTS)}.")
    flags.DEFINE_string("data_dir", None, "TFDS data dir of the offline datasets (default: "
                        "the library's).")
    flags.mark_flag_as_required("outdir")


if __name__ == "__main__":
    from absl import app
    _define_flags()
    app.run(main)
