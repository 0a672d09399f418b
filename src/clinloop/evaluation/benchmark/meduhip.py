"""MedUHIP's Table 1 (Dice by number of fused raters 1…R for the three simulated click
strategies and SPA), SPA's Table 2 (per-rater alignment), leave-one-rater-out,
preference transfer and the Table 3 ablation.

Not implemented yet in the benchmark: these need targets fused from a chosen rater
subset (the spa protocol draws a random one) and, for leave-one-rater-out and the
ablation, models trained for them.
"""
from __future__ import annotations

from clinloop.evaluation.benchmark.base import Context, NotImplementedSuite

TITLE = "MedUHIP / SPA alignment tables"


def stages(ctx: Context):
    raise NotImplementedSuite(
        "not implemented yet: suite 'meduhip' (meduhip.txt Table 1 by number of fused raters, spa.txt Table 2 "
        "alignment, leave-one-rater-out, preference transfer, Table 3 ablation)")
