"""Method registries for ``clinloop train`` and ``clinloop evaluate``: the library's
(:data:`clinloop.api.TRAINERS`, :data:`clinloop.api.PROTOCOLS`).

``train --method M`` builds its flags from ``TRAINERS[M]``'s ``OPTIONS`` dataclass
and calls its ``train_model(options)``; ``evaluate --protocol P`` builds them from
``PROTOCOLS[P]``'s ``OPTIONS`` and calls ``run_protocol(options)``.
"""
from __future__ import annotations

from clinloop.api import PROTOCOLS, TRAINERS, load  # noqa: F401
