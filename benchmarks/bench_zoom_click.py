"""Seconds per corrective click with and without SPA's zoom (``SPAConfig.zoom_in``): median, mean,
90th percentile and maximum over the corrective clicks of the ``clicks`` protocol's users on the
first ``--cases`` held-back LIDC slices (network alone). A zoomed click costs one more decoder
pass, and one more image-encoder pass whenever its crop differs from the last one encoded (the
model keeps the last few embeddings in memory).

    python benchmarks/bench_zoom_click.py --model spa-general --cases 12 --threads 1
"""
from __future__ import annotations

import argparse

import numpy as np
import torch


def main() -> None:
    from clinloop.evaluation.clicks_protocol import ClicksProtocolOptions, run_clicks
    from clinloop.evaluation.spa_protocol import load_method, slice_cases
    from clinloop.interaction.users import PreferredRaterUser

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="spa-general")
    ap.add_argument("--data", default="../shared/data/lidc")
    ap.add_argument("--cases", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ds, idx = slice_cases(ClicksProtocolOptions(method="spa", data=a.data, split="val", per_nodule=1))
    print(f"{a.model}, {a.cases} held-back slices, {a.threads} thread(s)\n")
    print("| zoom | corrective clicks | median s | mean s | p90 s | max s |\n|---|---|---|---|---|---|")
    for zoom in (0.0, None):  # off, then the model's own setting
        model = load_method("spa", a.model)
        model.config.honour_clicks = False
        if zoom is not None:
            model.config.zoom_in = zoom
        secs = []
        for pos, i in enumerate(idx[: a.cases]):
            s = ds[i]
            target = PreferredRaterUser.from_raters(s.masks, seed=pos, rater_valid=s.rater_valid).target
            img = s.image[0] if s.image.shape[0] == 1 else np.moveaxis(s.image, 0, -1)
            secs += run_clicks(model, img, target, pos, 5)["seconds"][1:]
        t = np.asarray(secs)
        print(f"| {model.config.zoom_in:g} | {len(t)} | {np.median(t):.2f} | {t.mean():.2f} | "
              f"{np.percentile(t, 90):.2f} | {t.max():.2f} |")


if __name__ == "__main__":
    main()
