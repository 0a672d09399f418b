"""Baselines built on the LiteMedSAM backbone (box- and click-prompted)."""
