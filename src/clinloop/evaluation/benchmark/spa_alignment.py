"""spa.txt Table 2 (§4.3.3): does SPA's prediction move towards the raters a user's
target includes and away from the ones it leaves out, iteration by iteration?

The paper fixes one target on REFUGE2 (Clinicians 2, 4, 5, 6, 7 combined, 1 and 3
left out) and reports, per iteration 1…6, the Dice of the prediction to each of the
seven clinicians and its change relative to iteration 1. LIDC has four raters, so we
take every subset S of 3 raters (one left out; 5 of 7 in the paper) and of 2 raters (two
left out, as in the paper). Per held-out slice on which all four raters drew something
and per S, the simulated user's target is the majority of S
(:func:`clinloop.data.fusion.majority_vote`; for two raters: both agree); the user
clicks at the target's centre, then picks the candidate closest to its target
(:func:`follow_user`), and we record the proposal's Dice to each of the four raters
after every iteration (:func:`alignment_case`). :func:`summarise` pools included and
excluded raters: per iteration their mean Dice, and per case Dice@6 − Dice@1 to the
included and to the excluded raters, with 95 % bootstrap intervals over patients.

Models: ``spa-lidc`` and ``spa-general`` (the served default; its LIDC patients are
disjoint from SPA's held-out ones, checked per case). Sizes: ``--quick`` 2 slices;
default 30 (measured 4–5 min per model on a shared, loaded 2-core machine); ``--full``
all 66 held-out slices with four drawn masks. Stages ``alignment-<model>`` (suite ``meduhip``).
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

from clinloop.evaluation.benchmark.base import Context, Stage
from clinloop.evaluation.benchmark.stats import bootstrap_ci, fmt, fmt_ci

TITLE = "spa.txt Table 2: Dice to each rater over iterations when the target fuses a subset of the raters, LIDC"
MODELS = ("spa-lidc", "spa-general")
ITERATIONS = 6
SUBSET_SIZES = (3, 2)


def follow_user(model, image: np.ndarray, target: np.ndarray, *, seed: int, iterations: int,
                profile: dict | None = None, structure: str | None = None):
    """A simulated user who wants ``target (H, W)`` drives a :class:`~clinloop.interaction.session.Session`
    on ``image (H, W)``: a click at the target's centre (``largest_error_click`` against an empty
    prediction), then the candidate a ``PreferredRaterUser`` for the target picks; when it picks none
    (accepts) the mask stays for the remaining iterations. ``profile``: a preference profile from an
    earlier image (``Session.profile()``); ``structure``: the case's (its token, adapters or expert).
    Returns ``(masks, session)``: ``iterations`` proposal masks ``(H, W)`` bool, one per iteration, and
    the session (for its ``profile()``)."""
    from clinloop.interaction.session import Session
    from clinloop.interaction.users import PreferredRaterUser, largest_error_click

    target = np.asarray(target, bool)
    if not target.any():
        raise ValueError("follow_user: the target is empty (no structure to click on)")
    session = Session(model, image, seed=seed, profile=profile, structure=structure)
    user = PreferredRaterUser(target)
    p = session.click(*largest_error_click(target, None))
    masks = [p.mask]
    while len(masks) < iterations:
        k = user.choose(p.candidates, p.mask)
        if k is None:
            break
        p = session.choose(k)
        masks.append(p.mask)
    return masks + [masks[-1]] * (iterations - len(masks)), session


def rater_subsets(n_raters: int, sizes=SUBSET_SIZES) -> list[tuple[int, ...]]:
    """Every subset of ``range(n_raters)`` of each size in ``sizes``, in that order."""
    return [c for k in sizes for c in combinations(range(n_raters), k)]


def alignment_case(model, image: np.ndarray, masks: np.ndarray, subset, *, seed: int,
                   iterations: int = ITERATIONS, structure: str | None = None) -> np.ndarray | None:
    """``(iterations, R)`` Dice of the proposal after each iteration to each rater of ``masks (R, H, W)``,
    for a user whose target is the majority of the raters in ``subset``; None when that target is empty."""
    from clinloop.data.fusion import majority_vote
    from clinloop.metrics import dice

    masks = np.asarray(masks, bool)
    target = majority_vote(masks[list(subset)])
    if not target.any():
        return None
    props, _ = follow_user(model, image, target, seed=seed, iterations=iterations, structure=structure)
    return np.array([[dice(m, r) for r in masks] for m in props])


def _role_means(dice: np.ndarray, subset) -> tuple[np.ndarray, np.ndarray]:
    inc = np.zeros(dice.shape[1], bool)
    inc[list(subset)] = True
    return dice[:, inc].mean(1), dice[:, ~inc].mean(1)


def summarise(cases: list[dict], n_raters: int, seed: int = 0) -> dict:
    """From per-(slice, subset) rows ``{"patient_id", "subset", "dice": (iterations, R)}``:

    * ``ci["inc|<size>|<j>"]`` / ``ci["exc|<size>|<j>"]``: mean Dice after iteration j to the included /
      excluded raters (per row the mean over those raters), subsets of that size;
    * ``ci["d_inc|<size>"]``, ``ci["d_exc|<size>"]``: per row Dice@last − Dice@1 to them, and
      ``ci["gap|<size>"]`` = d_inc − d_exc (> 0: the prediction moved towards the included raters);
    * ``per_subset["1,2,3"]``: per iteration the mean Dice to each rater (rater numbers from 1).

    Intervals: :func:`bootstrap_ci` over patients."""
    ci, per_subset = {}, {}
    sizes = sorted({len(c["subset"]) for c in cases}, reverse=True)
    for k in sizes:
        rows = [c for c in cases if len(c["subset"]) == k]
        pats = [c["patient_id"] for c in rows]
        roles = [_role_means(np.asarray(c["dice"]), c["subset"]) for c in rows]
        for j in range(len(roles[0][0])):
            ci[f"inc|{k}|{j + 1}"] = bootstrap_ci([r[0][j] for r in roles], pats, seed=seed)
            ci[f"exc|{k}|{j + 1}"] = bootstrap_ci([r[1][j] for r in roles], pats, seed=seed)
        d_inc = [r[0][-1] - r[0][0] for r in roles]
        d_exc = [r[1][-1] - r[1][0] for r in roles]
        ci[f"d_inc|{k}"] = bootstrap_ci(d_inc, pats, seed=seed)
        ci[f"d_exc|{k}"] = bootstrap_ci(d_exc, pats, seed=seed)
        ci[f"gap|{k}"] = bootstrap_ci(np.subtract(d_inc, d_exc), pats, seed=seed)
    for s in rater_subsets(n_raters, sizes):
        d = [np.asarray(c["dice"]) for c in cases if tuple(c["subset"]) == s]
        if d:
            per_subset[",".join(str(r + 1) for r in s)] = np.mean(d, axis=0).tolist()
    return {"ci": ci, "per_subset": per_subset, "sizes": sizes}


def _compute(model_name: str):
    def compute(ctx: Context) -> dict:
        from tqdm.auto import tqdm

        from clinloop.data import load_dataset
        from clinloop.evaluation.benchmark.cases import heldout_lidc, lidc_dir, trained_ids
        from clinloop.evaluation.spa_protocol import load_method

        ds = load_dataset(lidc_dir(ctx.data_root))
        model = load_method("spa", model_name)
        trained = trained_ids(model_name)
        idx = []
        for i in heldout_lidc(ds, per_nodule=1):
            s = ds[i]
            drawn = s.masks.reshape(s.masks.shape[0], -1).any(1)
            if s.rater_valid is not None:
                drawn &= np.asarray(s.rater_valid, bool)
            if drawn.all() and not {ds.case_ids[i], str(s.patient_id)} & trained:
                idx.append(i)
        idx = idx[:ctx.size(2, 30, None)]
        n_raters = ds[idx[0]].masks.shape[0] if idx else 4
        cases = []
        for pos, i in enumerate(tqdm(idx, desc=f"alignment {model_name}", leave=False, disable=not ctx.verbose)):
            s = ds[i]
            for si, subset in enumerate(rater_subsets(n_raters)):
                d = alignment_case(model, s.image[0], s.masks, subset, seed=ctx.seed + 100 * pos + si,
                                   structure=s.structure)
                if d is not None:
                    cases.append({"case_id": ds.case_ids[i], "patient_id": str(s.patient_id), "subset": list(subset),
                                  "dice": d.round(6).tolist()})
        out = summarise(cases, n_raters, seed=ctx.seed) if cases else {"ci": {}, "per_subset": {}, "sizes": []}
        return {"model": model_name, "n_cases": len(idx), "n_rows": len(cases), "n_raters": n_raters,
                "iterations": ITERATIONS, **out, "cases": cases}
    return compute


def stages(ctx: Context) -> list[Stage]:
    cfg = {"limit": ctx.size(2, 30, None), "iterations": ITERATIONS, "subset_sizes": list(SUBSET_SIZES)}
    return [Stage(f"alignment-{m}", _compute(m), {**cfg, "model": m}) for m in MODELS]


def _rel(ci: dict, first: dict) -> str:
    if ci.get("mean") is None or not first.get("mean"):
        return "—"
    return f"{fmt(ci['mean'])} ({100 * (ci['mean'] / first['mean'] - 1):+.2f} %)"


def _arrow(means: list[list[float]], q: int, excluded: bool) -> str:
    """``excl. 0.712 → 0.695 (-2.39 %)``: rater q's mean Dice at the first and last iteration."""
    a, b = means[0][q], means[-1][q]
    change = f" ({100 * (b / a - 1):+.2f} %)" if a else ""
    return ("excl. " if excluded else "") + f"{a:.3f} → {b:.3f}{change}"


def section(ctx: Context, recs: dict[str, dict]) -> str:
    from clinloop.evaluation.benchmark.published import SPA_TABLE2_INCLUDED, SPA_TABLE2_REFUGE2
    from clinloop.evaluation.benchmark.report import table

    text = [f"## {TITLE}\n"]
    for m in MODELS:
        r = recs.get(f"alignment-{m}", {}).get("result")
        if not r or not r["cases"]:
            continue
        ci, sizes, n = r["ci"], r["sizes"], r["n_raters"]
        heads = [h for k in sizes for h in (f"included ({k} of {n})", f"excluded ({n - k} of {n})")]
        rows = [[str(j)] + [_rel(ci[f"{role}|{k}|{j}"], ci[f"{role}|{k}|1"]) for k in sizes for role in ("inc", "exc")]
                for j in range(1, r["iterations"] + 1)]
        rows.append([f"Dice@{r['iterations']} − Dice@1 (95 % CI)"]
                    + [fmt_ci(ci[f"{role}|{k}"]) for k in sizes for role in ("d_inc", "d_exc")])
        rows.append(["included − excluded change"] + [x for k in sizes for x in (fmt_ci(ci[f"gap|{k}"]), "")])
        text += [f"### `{m}` (ours): mean Dice to the included / excluded raters, change vs. iteration 1\n",
                 table(["iteration"] + heads, rows),
                 f"\n{r['n_rows']} users (slice, subset) on {r['n_cases']} slices; a subset whose majority is empty "
                 "on a slice has no user there.\n"]
        prow = [[f"{{{key}}}"] + [_arrow(means, q, q + 1 not in {int(x) for x in key.split(",")}) for q in range(n)]
                for key, means in r["per_subset"].items()]
        text += [f"Per rater, `{m}`: Dice@1 → Dice@{r['iterations']} (change), by target subset:\n",
                 table(["target fuses raters"] + [f"rater {q + 1}" for q in range(n)], prow)]
    inc = ", ".join(map(str, SPA_TABLE2_INCLUDED))
    text += [f"\nPublished (spa.txt Table 2, REFUGE2 optic cup; target combines Clinicians {inc}; Dice %):\n",
             table(["iteration (**published**)"] + [f"Clinician {q}" + ("" if q in SPA_TABLE2_INCLUDED else " (excl.)")
                                                     for q in range(1, 8)], [list(row) for row in SPA_TABLE2_REFUGE2]),
             "\nWhat differs: REFUGE2 (7 clinicians, one target subset, a weighted average) in the paper; LIDC "
             "(4 raters, the majority of every subset of 3 and of 2 raters, slices on which all four drew) here. "
             "LIDC's rater index is not one reader across nodules, so a rater column is a position, not a "
             "person: the included / excluded table is the one to compare; the paper's \"(+2.10%)\" is our "
             "change relative to iteration 1 of the mean. Pooled over all subsets of one size every rater is "
             "included equally often, so after the first click (before any choice) the two columns are nearly "
             "equal: what to read is how far they separate. The first interaction is one click at the target's centre, later ones "
             "candidate choices (accepting stops the changes).\n"]
    return "\n".join(text)
