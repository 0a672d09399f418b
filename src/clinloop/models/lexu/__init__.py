"""LEXU (Abutalip et al.): learning from expert disagreement for single-pass
uncertainty estimation — multi-head U-Net, DGM + MRO losses, baselines."""
