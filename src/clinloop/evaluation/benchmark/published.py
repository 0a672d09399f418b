"""Published rows, copied as printed. Each constant names its source; nothing here is
computed. Where a figure comes from a paper that is not in ``../shared/papers``, it is
quoted from issue 15 and marked unchecked."""
from __future__ import annotations

# issue 15 quotes these (GED₁₀₀, HM-IoU₃₂ on LIDC); the papers themselves are not in
# ../shared/papers, so they are unchecked here. GED₁₆ is not quoted.
AMBIGUITY_PUBLISHED = (
    ("Prob. U-Net", "0.252", "0.548"),
    ("PHiSeg", "0.224", "0.595"),
    ("MoSE", "0.189", "0.624"),
    ("CCDM", "0.183", "0.631"),
)
AMBIGUITY_SOURCE = ("the published rows come from the probabilistic-segmentation papers' own LIDC splits of the "
                    "Kohl et al. 128² crops (15,096 slices in total per spa.txt §4.1), automatic models trained "
                    "on GPUs, no interaction.")

# spa.txt Table 1, LIDC column (Dice %, after 1 iteration; after 3 for the interactive rows).
# (method, category, Dice@1, Dice@3 or None)
SPA_TABLE1_LIDC = (
    ("UNet", "Det", "62.99", None),
    ("TransUNet", "Det", "64.09", None),
    ("SwinUNet", "Det", "59.45", None),
    ("Ensemble UNet", "Unc", "63.84", None),
    ("ProbUNet", "Unc", "48.52", None),
    ("LS-Unet", "Unc", "62.05", None),
    ("MH-Unet", "Unc", "62.60", None),
    ("MRNet", "Unc", "63.29", None),
    ("SAM (clicks)", "Int", "66.68", "66.71"),
    ("MedSAM (clicks)", "Int", "68.42", "68.45"),
    ("MSA (clicks)", "Int", "66.88", "66.87"),
    ("SAM-U V1 (box)", "Unc-Int", "62.24", "62.84"),
    ("SAM-U V2 (box)", "Unc-Int", "64.82", "65.44"),
    ("SPA", "Unc-Int", "88.07", "88.56"),
)
SPA_TABLE1_NOTE = ("spa.txt Table 1: REFUGE2, LIDC (15,096 Kohl et al. crops, 80/20 split: 3,019 test images), QUBIQ "
                   "tasks; SAM-family backbones at full size on an RTX A4000.")

# meduhip.txt Table 3, LIDC column: NoC to Dice 0.70 (max 6 interactions, failure = 10)
MEDUHIP_TABLE3_LIDC_NOC70 = (
    ("SAM", "3.94"), ("MedSAM", "3.69"), ("MSA", "3.88"), ("SAM-U (SAM backbone)", "4.18"),
    ("SAM-U (MedSAM backbone)", "3.86"), ("MedUHIP", "2.24"),
)
# spa.txt §4.3.2 (text on Fig. 4): "In the LIDC dataset, SPA achieves 75% Dice Score with only 2.7 iterations"
SPA_FIG4_LIDC_NOC75 = ("SPA", "2.7")
# spa.txt §4.2: "It takes 0.2 second per iteration" (RTX A4000, N = 48, K = 4)
SPA_SECONDS_PER_ITERATION = "0.2"

# spa.txt Table 2 (REFUGE2 optic cup, Dice %): target = Clinicians 2, 4, 5, 6, 7 combined,
# Clinicians 1 and 3 excluded; rows = iterations 1..6, columns = Clinicians 1..7; the
# bracket is the change relative to iteration 1, as printed.
SPA_TABLE2_INCLUDED = (2, 4, 5, 6, 7)
SPA_TABLE2_REFUGE2 = (
    ("1", "75.02", "78.92", "83.98", "78.25", "80.81", "84.86", "59.35"),
    ("2", "74.03 (-1.32%)", "80.58 (+2.10%)", "84.03 (+0.05%)", "78.88 (+0.81%)", "81.92 (+1.37%)",
     "85.62 (+0.90%)", "60.43 (+1.82%)"),
    ("3", "73.61 (-1.88%)", "80.88 (+2.48%)", "83.68 (-0.36%)", "79.16 (+1.16%)", "82.17 (+1.68%)",
     "85.87 (+1.19%)", "60.79 (+2.43%)"),
    ("4", "73.35 (-2.23%)", "81.29 (+3.00%)", "83.40 (-0.69%)", "79.19 (+1.20%)", "82.32 (+1.87%)",
     "86.06 (+1.41%)", "61.06 (+2.88%)"),
    ("5", "73.27 (-2.33%)", "81.35 (+3.08%)", "83.32 (-0.79%)", "79.17 (+1.18%)", "82.48 (+2.07%)",
     "85.90 (+1.23%)", "61.14 (+3.02%)"),
    ("6", "73.15 (-2.49%)", "81.54 (+3.32%)", "83.30 (-0.81%)", "79.23 (+1.25%)", "82.65 (+2.28%)",
     "86.03 (+1.38%)", "61.34 (+3.35%)"),
)
# spa.txt §4.3.2: "The Dice Score improves from 91.68% to 92.43% on Kidney dataset by using
# user-adapted GMM parameters" (the iteration is not stated). (without, with)
SPA_TRANSFER_KIDNEY = ("91.68", "92.43")
