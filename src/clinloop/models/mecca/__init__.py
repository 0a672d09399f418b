"""MECCA: interactive refinement with self-adaptive confidence calibration (mecca.txt).

One module per paper component:

* :mod:`.environment` — agents (one per pixel/voxel), state (b, p, h), action set
  A = {±0.1, ±0.2, ±0.4}, transition p ← clip(p + a, 0, 1) (Eq. 1), Definition 1.
* :mod:`.pnet` — P-Net-style policy/value network S (dilated convolutions), 2-D and 3-D.
* :mod:`.confidence` — action-confidence network C(s, a) and the symmetric BCE (Eq. 2–3).
* :mod:`.reward` — confidence-shaped reward (Eq. 4–5).
* :mod:`.label_generation` — simulated labels for unlabeled data (Eq. 6) above δ.
* :mod:`.hints` — simulated clicks on wrongly predicted boundary points → hint map.
* :mod:`.advice` — SLIC advice regions ranked by mean action confidence.
* :mod:`.interactive_cnn` — the InterCNN-style baseline and the non-interactive CNN.
* :mod:`.model` — :class:`MECCAModel` (the ``InteractiveModel`` for sessions) and ``load_mecca``.
"""
