"""The MECCA protocol run as a benchmark stage's record (the ``mecca`` suite's stages and
:mod:`~clinloop.evaluation.benchmark.mecca_semisup`)."""
from __future__ import annotations

from clinloop.evaluation.benchmark.base import Context
from clinloop.evaluation.benchmark.stats import bootstrap_ci


def record(ctx: Context, opts, patients) -> dict:
    """Run the MECCA protocol ``opts`` (per case) and add patient-bootstrap intervals of
    each step's Dice; ``patients(case_id)`` names a case's patient."""
    from clinloop.evaluation.mecca_protocol import run_protocol

    res = run_protocol(opts, verbose=False)
    cases = res.pop("per_case")
    pats = [patients(str(c["case_id"])) for c in cases]
    ci = {f"dice_{k + 1}": bootstrap_ci([c["dice"][k] for c in cases], pats, seed=ctx.seed) for k in range(opts.steps)}
    return {"method": opts.method, "model": opts.model, "n_cases": res["n_cases"], "protocol": res, "ci": ci,
            "cases": cases}
