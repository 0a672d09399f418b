"""The MECCA evaluation protocol (mecca.txt §5.1–5.3).

``clinloop evaluate --method {mecca,mecca-no-confidence,interactive-cnn,unet} --protocol mecca
--data PATH --steps 5 [--limit N] [--seed S] [--model DIR] [--fusion majority] --out results.json``

For each held-back case (patients the model was *not* trained on, read from its
``data.json``; cases whose fused label is empty are skipped, there is nothing to
click on), a simulated user starts from ``p^(0) = 0.5`` and, before each of the
``--steps`` refinement steps, clicks up to ``hint_points`` wrongly predicted
boundary points of the current prediction (§5.1: "randomly selecting the wrong
segmentation points on the edges with the ground truth"). After every step we
score Dice and ASSD (physical units via the sample's spacing; a step whose
prediction is empty gets the image diagonal as its ASSD instead of ∞, so means
stay finite) and count *interactive misunderstanding* events (Definition 1:
agents whose probability moved against their label, see
:func:`clinloop.models.mecca.environment.misunderstanding`).

``results.json`` keys: ``method``, ``protocol``, ``n_cases``, ``dice_per_step``,
``assd_per_step``, ``seconds_per_step`` (model time of one step, mean over
cases), ``misunderstanding_per_step`` (mean count per case) and ``flips_per_step``
(mean count per case of agents whose thresholded prediction turned from correct
to wrong at that step; not in the paper, a stricter companion of Definition 1
that a CNN's small sigmoid drifts on the correct side do not inflate).

``unet`` is the non-interactive CNN (model folders with method
``mecca-unet``). Without ``--model`` the shipped model of the method is used:
for 2-D data the LIDC-slice models (``SHIPPED``), for 3-D data the LIDC
nodule-volume models (``SHIPPED_3D``). The data's dimensionality is ``--ndim``
or, when not given, that of its first case (LIDC reads as 2-D slices unless
``--ndim 3``, which stacks each nodule's slices into a volume). ``--per-case``
adds ``per_case`` (case id, Dice and misunderstanding count per step) for
paired comparisons.

Volumes (BraTS case folders, the Decathlon atrium): models trained with a working
grid (``zoom`` > 1, ``clinloop.models.mecca.volumes``) get each held-back case whole
and raw; they normalise and pool it themselves, the simulated user clicks on the
full-size mask, and Dice/ASSD are scored at full resolution (misunderstanding and
flips count the coarse agents). Without ``--model`` the shipped ``<method>-brats`` /
``<method>-atrium`` folder is used for those layouts (``pnet`` = ``unet``, the P-Net
without hints: ``pnet-brats``). ``--figure PNG`` (compare): Dice and ASSD per step
per method, mecca.txt Fig. 6 (left).

Robustness comparison (:func:`compare`, ``clinloop evaluate --protocol mecca --mode compare
--method mecca --data PATH --methods mecca,mecca-no-confidence,interactive-cnn --seeds 0,1,2
--limit N [--ndim 3] --out compare.json``; formerly ``python -m clinloop.evaluation.mecca_protocol
compare ...``): every method on the same held-back cases
per seed (the seed draws the case subset and the clicks), mean ± sample standard
deviation over seeds of each step's Dice, ASSD and misunderstanding count, and a
paired bootstrap 95 % interval of the Dice difference after the last step between
the first method and each other one (patients resampled: a case's difference is its
mean over the seeds that drew it, and all cases of a drawn patient count).

The semi-supervised table (§5.3, Table 2) is produced by
:func:`semisupervised_table` (``clinloop evaluate --protocol mecca --mode semisup
--method mecca --data PATH --out DIR [--train-args "--size 48 --width 12 ..."]``;
formerly ``python -m clinloop.evaluation.mecca_protocol semisup ...``): MECCA trained with 1/8, 1/4, 1/2 and 1/1 of
the training cases labeled, each evaluated with this protocol; JSON + figure.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from clinloop.config_options import ProtocolOptions, command_line, opt
from clinloop.evaluation.mecca_cases import (  # noqa: F401  (public names of this module)
    METHODS,
    MODEL_METHOD,
    RESULT_KEYS,
    SHIPPED,
    SHIPPED_3D,
    _load,
    data_ndim,
    evaluate_cases,
    evaluate_model,
    iter_cases,
    open_dataset,
    shipped_name,
)
from clinloop.evaluation.mecca_compare import (  # noqa: F401
    compare,
    compare_table,
    paired_bootstrap,
    plot_compare,
    plot_semisupervised,
    semisupervised_table,
    summarise_runs,
)

MODES = ("evaluate", "compare", "semisup")


@dataclass(kw_only=True)
class MECCAProtocolOptions(ProtocolOptions):
    """``clinloop evaluate --protocol mecca`` (and ``clinloop.evaluate(method, "mecca", data, ...)``).

    ``mode``: ``evaluate`` (one model, ``results.json``), ``compare`` (``methods``
    over ``seeds`` with a paired bootstrap; ``method`` is ignored, the first of
    ``methods`` is the reference) or ``semisup`` (trains MECCA per labeled
    fraction into the folder ``out``; ``limit`` defaults to 100 there)."""

    protocol: str = "mecca"
    mode: str = opt("evaluate", choices=MODES, help="evaluate one model, compare methods, or the semi-supervised table")
    steps: int = opt(5, help="refinement steps (interactions) per case")
    fusion: str = opt("majority", help="rater fusion giving the target (clinloop.data.fusion)")
    size: int | None = opt(None, help="crop size around the label (default: the model's training size; 0 = whole image)")
    hint_points: int | None = opt(None, help="clicks per step (default: the model's)")
    label: str | None = opt(None, help="a mask file for a single image/volume given as --data (e.g. the BraTS sample's label)")
    all_patients: bool = opt(False, help="do not hold back: also evaluate patients the model was trained on")
    ndim: int | None = opt(None, choices=(2, 3),
                           help="2-D slices or 3-D volumes (default: the model's, else the data's first case; "
                                "LIDC is read as nodule volumes with --ndim 3)")
    per_case: bool = opt(False, help="also write per-case Dice and misunderstanding counts")
    click_reach: float | None = opt(None, help="only agents within this many working-grid voxels of a click move "
                                               "(default: the model's MECCAConfig.click_reach; 0: all, the paper)")
    # --mode compare
    methods: str = opt("mecca,mecca-no-confidence,interactive-cnn",
                       help="compare: comma-separated; the first is compared pairwise with each other")
    seeds: str = opt("0,1,2", help="compare: comma-separated seeds (each draws the cases and the clicks)")
    method_model: list = opt(default_factory=list, action="append", metavar="METHOD=DIR",
                             help="compare: model folder for a method (default: the shipped one); repeatable")
    threads: int | None = opt(None, help="torch CPU threads (compare: default 1)", at_least=1)
    figure: str | None = opt(None, help="compare: also write Dice and ASSD per step per method (Fig. 6) to this PNG",
                             type=str)
    # --mode semisup
    fractions: str = opt("0.125,0.25,0.5,1", help="semisup: labeled fractions")
    iterations: int = opt(200, help="semisup: training iterations per fraction")
    max_minutes: float = opt(10.0, help="semisup: training wall time per fraction")
    train_options: dict = opt(default_factory=dict, cli=False,
                              help="semisup: further MECCATrainOptions fields for every run (CLI: --train-args)")


OPTIONS = MECCAProtocolOptions


def run_protocol(o: MECCAProtocolOptions, verbose: bool = False) -> dict[str, Any]:
    """Run ``o.mode``; returns its result (also written to ``o.out`` when given)."""
    from clinloop.atomic import atomic_write_text

    if o.mode not in MODES:
        raise ValueError(f"unknown mode {o.mode!r}; choose from {', '.join(MODES)}")
    if o.click_reach is not None and o.mode != "evaluate":
        raise ValueError(f"--click-reach applies to --mode evaluate, not {o.mode!r} "
                         "(set it in the model's config.json)")
    if o.mode == "semisup":
        if o.out is None:
            raise ValueError("--mode semisup needs --out (the folder its models are trained into)")
        fr = tuple(float(x) for x in str(o.fractions).split(","))
        t = semisupervised_table(o.data, o.out, fr, o.iterations, o.max_minutes,
                                 100 if o.limit is None else o.limit, o.steps, o.seed, o.train_options)
        if verbose:
            print(json.dumps(t, indent=2))
        return t
    if o.mode == "compare":
        import torch

        torch.set_num_threads(max(1, o.threads or 1))
        models = {}
        for kv in o.method_model:
            if "=" not in kv:
                raise ValueError(f"--method-model wants METHOD=DIR, got {kv!r}")
            m, d = kv.split("=", 1)
            models[m] = d
        res = compare(o.data, str(o.methods).split(","), [int(x) for x in str(o.seeds).split(",")], o.limit,
                      o.steps, o.ndim, models, o.format, o.fusion, o.label, o.all_patients)
        res["command"] = command_line("evaluate", o, skip=("train_options", "fractions", "iterations", "max_minutes",
                                                           "per_case", "hint_points", "size", "figure", "click_reach"))
        if o.out is not None:
            atomic_write_text(o.out, json.dumps(res, indent=2) + "\n")
        if o.figure:
            plot_compare(res, o.figure)
        if verbose:
            print(compare_table(res))
        return res
    if o.threads:
        import torch

        torch.set_num_threads(o.threads)
    out = evaluate_model(o.method, o.data, o.model, fmt=o.format, limit=o.limit, seed=o.seed, steps=o.steps,
                         fusion=o.fusion, size=o.size, hint_points=o.hint_points, all_patients=o.all_patients,
                         label=o.label, ndim=o.ndim, per_case=o.per_case, click_reach=o.click_reach)
    if o.out is not None:
        atomic_write_text(o.out, json.dumps(out, indent=2) + "\n")
    if verbose:
        print(json.dumps(out))
    return out


if __name__ == "__main__":  # the old entry point: say where it went
    import sys

    sys.exit("python -m clinloop.evaluation.mecca_protocol moved to the CLI:\n"
             "  clinloop evaluate --protocol mecca --mode compare --method mecca --data PATH --methods A,B,C "
             "--seeds 0,1,2 --out compare.json\n"
             "  clinloop evaluate --protocol mecca --mode semisup --method mecca --data PATH --out DIR "
             "[--train-args \"--size 48 ...\"]")
