"""SPA (spa.txt) and MedUHIP (meduhip.txt) on the LiteMedSAM backbone.

One module per paper component: :mod:`.preference_distribution` (p_theta(z)),
:mod:`.distribution_generator` (E_theta), :mod:`.conditioning`
(e_xn = ReLU(Conv(e_x ⊕ z_n))), :mod:`.candidates` (y_app, K-means r_k),
:mod:`.variants` (spa, meduhip, Table-3 ablations), :mod:`.config`,
:mod:`.model` (networks, interactive model, loader).
"""
