"""Published rows, copied as printed. Each constant names its source; nothing here is
computed. The SPA / MedUHIP figures come from the papers in ``../shared/papers``; the LIDC
ambiguity rows from CCDM's Table 1 (not in that folder), read in a public full-text copy."""
from __future__ import annotations

# Zbinden et al., "Stochastic segmentation with conditional categorical diffusion models",
# ICCV 2023 (arXiv:2303.08888), Table 1, the LIDCv1 columns, as printed (mean ± sd; CCDM
# over 3 seeds). LIDCv1 (CCDM §4.1 and its README): the 128² crops distributed with
# S. Knegt's Probabilistic-Unet-Pytorch (the data PHiSeg and MoSE name too), 15,096 slices
# split 60:20:20, used by PHiSeg, SSN, MoSE and JProb. U-Net. GED_n: the generalised energy
# distance D²_GED with d = 1 − IoU and n samples per image; HM-IoU_n: Hungarian-matched
# IoU with n samples against the 4 radiologists. The caption: CIMD and AB were rerun by
# CCDM's authors; every other score is from its original paper except those marked (+) or
# (−), "from [53]" (JProb. U-Net, Zhang et al. 2022), and (†), from [35] (SSN, Monteiro
# et al. 2020). None: that cell of the table is empty.
# (method, GED₁₆, GED₁₀₀, HM-IoU₃₂, HM-IoU₁₆, where the figures come from)
AMBIGUITY_PUBLISHED = (
    ("Prob. U-Net (Kohl et al. 2018)", "0.310±0.01", "0.252±0.004", "0.548±0.00", "0.552±0.00",
     "HM-IoU₃₂ marked (+), HM-IoU₁₆ (−): re-reported from JProb. U-Net; GED₁₆, GED₁₀₀: no mark legible"),
    ("PHiSeg (Baumgartner et al. 2019)", "0.262±0.00", "0.224±0.004", "0.595±0.00", "0.586±0.00",
     "GED₁₀₀ marked (†): from SSN's table; GED₁₆, HM-IoU₁₆ (−) and HM-IoU₃₂ (+): from JProb. U-Net"),
    ("SSN (Monteiro et al. 2020)", "0.259±0.00", "0.225±0.002", "0.555±0.01", "0.558±0.00",
     "GED₁₀₀ unmarked (SSN's own); GED₁₆, HM-IoU₁₆ (−) and HM-IoU₃₂ (+): from JProb. U-Net"),
    ("JProb. U-Net (Zhang et al. 2022)", None, None, "0.647±0.01", None,
     "its own; the best HM-IoU₃₂ of the table (it reports GED₃₂ 0.206, not GED₁₆/GED₁₀₀)"),
    ("MoSE (Gao et al. 2023)", "0.218±0.003", "0.189±0.002", None, "0.624±0.004",
     "MoSE's own; its 0.624 is HM-IoU₁₆ (CCDM §5.1: CCDM's HM-IoU₁₆ is 0.001 below MoSE's), "
     "no HM-IoU₃₂ is printed"),
    ("AB (analog bits, Chen et al.)", "0.213±0.001", None, "0.619±0.001", "0.614±0.001",
     "rerun by CCDM's authors; no GED₁₀₀ printed (GED₅₀ 0.193)"),
    ("CIMD (Rahman et al. 2023)", "0.234±0.005", None, "0.592±0.002", "0.587±0.001",
     "rerun by CCDM's authors; no GED₁₀₀ printed (GED₅₀ 0.210)"),
    ("CCDM (Zbinden et al. 2023)", "0.212±0.002", "0.183±0.002", "0.631±0.002", "0.623±0.002",
     "CCDM's own, 3 seeds"),
)
AMBIGUITY_SOURCE = ("the published rows are CCDM's Table 1 (Zbinden et al., ICCV 2023), LIDCv1 columns: the 128² "
                    "LIDC crops of Probabilistic-Unet-Pytorch (15,096 slices, 60:20:20 train/validation/test, used "
                    "by PHiSeg, SSN, MoSE and JProb. U-Net; no paper says it drops slices without a lesion mark), "
                    "automatic models trained on GPUs, no interaction. CCDM's LIDCv2 (the hierarchical probabilistic "
                    "U-Net's release: 12,816 images, 70:15:15, used by Kohl et al. 2018 and CAR) "
                    "has other figures (e.g. Prob. U-Net HM-IoU₁₆ 0.500) and is not shown: CCDM warns that comparing "
                    "the two versions can mislead.")

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
