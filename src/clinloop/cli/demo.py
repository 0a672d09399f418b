"""``clinloop demo``: the main job on an embedded example (no network, no ../shared).

1. Generates a small synthetic multi-rater dataset (4 raters with known styles)
   and writes it in the canonical layout, then prints ``data info`` for it.
2. Runs a simulated clinician's SPA session on the first case with the shipped
   model: one click, then the clinician picks the candidate closest to their
   preferred raters' fusion until no candidate is better, and accepts.
3. Prints Dice per iteration and saves a picture of the proposal and its
   candidates, the accepted mask and the replayable session history.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run a simulated clinician's session on an embedded example")
    p.add_argument("--out", default="clinloop-demo", help="folder for the example data, picture and results")
    p.add_argument("--model", default=None, help="model folder or shipped name (default: the shipped SPA model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=6, help="most user iterations (SPA: 6)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from clinloop.atomic import atomic_write_text
    from clinloop.data import load_dataset
    from clinloop.data.stats import dataset_stats, format_stats
    from clinloop.data.synthetic import write_example

    from clinloop import Session, load_model
    from clinloop.paths import output_folder

    if args.iterations < 1:
        raise ValueError(f"--iterations must be >= 1, got {args.iterations}")
    model = load_model(args.model)
    if not callable(getattr(model, "start", None)):  # LEXU and its baselines segment without clicks
        raise ValueError(f"--model {args.model}: {model.name} is not an interactive model (it takes no clicks); "
                         "the demo needs one that does, e.g. spa-general (the default) or spa-lidc")
    out = output_folder(args.out)  # a clear error when --out is a file
    example = write_example(out / "example", 4, seed=args.seed, name="clinloop-demo")
    ds = load_dataset(example)
    print(f"== embedded example: {example}")
    print(format_stats(dataset_stats(ds, progress=False)))

    from clinloop.interaction.users import PreferredRaterUser, largest_error_click
    from clinloop.metrics import dice
    from clinloop.visualize import plot_proposal

    sample = ds[0]
    user = PreferredRaterUser.from_raters(sample.masks, seed=args.seed, rater_valid=sample.rater_valid)
    prefers = ", ".join(sample.rater_ids[i] for i in user.raters)
    print(f"\n== simulated clinician on {sample.case_id}: prefers raters {prefers}; model {model.name}")
    session = Session(model, sample.image[0], seed=args.seed)
    print(f"set image: {session.set_image_seconds:.2f} s")
    point, positive = largest_error_click(user.target, None)
    proposal = session.click(point, positive)
    dices = [dice(proposal.mask, user.target)]
    print(f"iteration 1  click at ({point[0]:.0f}, {point[1]:.0f})   Dice {dices[-1]:.3f}   {proposal.seconds:.2f} s")
    for it in range(2, args.iterations + 1):
        k = user.choose(proposal.candidates, proposal.mask)
        if k is None:
            print(f"iteration {it}  no candidate is closer to the target: accept")
            break
        proposal = session.choose(k)
        dices.append(dice(proposal.mask, user.target))
        print(f"iteration {it}  pick candidate {k + 1}         Dice {dices[-1]:.3f}   {proposal.seconds:.2f} s")
    mask = session.accept()
    from clinloop.data.io import write_mask

    write_mask(out / "accepted_mask.png", mask)
    atomic_write_text(out / "session.json", json.dumps(
        {"case": sample.case_id, "seed": args.seed, "model": model.name, "preferred_raters": [sample.rater_ids[i] for i in user.raters],
         "dice_per_iteration": [round(d, 4) for d in dices], "history": session.history, "profile": session.profile()}, indent=1, default=float))
    fig = plot_proposal(sample.image[0], proposal, out / "demo.png", target=user.target, dice_per_iteration=dices,
                        clicks=[(point[0], point[1], positive)],
                        title=f"{model.name} on {sample.case_id}: Dice {dices[0]:.3f} -> {dices[-1]:.3f}")
    print(f"\naccepted mask: {out / 'accepted_mask.png'} ({int(np.sum(mask))} pixels); picture: {fig}; history: {out / 'session.json'}")
    return 0
