"""LEXU's tables (lexu.txt Tables 2–3: correlations, NCC, Dice, NLL; the β sweep; QC and
difficulty figures on LIDC, RIGA cup, QUBIQ and Drishti-GS1).

Not implemented yet in the benchmark: the shipped protocol (``clinloop evaluate
--protocol lexu``) computes the figures for one model, but the β sweep and the other
datasets need models trained for them (issue 15 also asks for a retrained
``lexu-lidc``), which this build does not ship.
"""
from __future__ import annotations

from clinloop.evaluation.benchmark.runner import Context, NotImplementedSuite

TITLE = "LEXU (lexu.txt Tables 2–3)"


def stages(ctx: Context):
    raise NotImplementedSuite(
        "not implemented yet: suite 'lexu' (lexu.txt Tables 2-3, beta sweep, QC/difficulty on LIDC, RIGA cup, QUBIQ, "
        "Drishti-GS1); for one model run `clinloop evaluate --protocol lexu --method lexu` meanwhile")
