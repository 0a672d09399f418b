"""MECCA's tables (mecca.txt Tables 1–3: Dice and ASSD per method, semi-supervised
fractions, Dice vs steps; Fig. 6) on BraTS, the atrium and LIDC.

Not implemented yet in the benchmark: ``clinloop evaluate --protocol mecca --mode
compare`` produces the LIDC comparison for the shipped models; BraTS / atrium models
are not shipped.
"""
from __future__ import annotations

from clinloop.evaluation.benchmark.runner import Context, NotImplementedSuite

TITLE = "MECCA (mecca.txt Tables 1–3)"


def stages(ctx: Context):
    raise NotImplementedSuite(
        "not implemented yet: suite 'mecca' (mecca.txt Tables 1-3 and Fig. 6 on BraTS, atrium, LIDC); for LIDC run "
        "`clinloop evaluate --protocol mecca --mode compare --method mecca` meanwhile")
