"""One ``APIRouter`` per area: :mod:`.meta` (page, info, worklist, profile),
:mod:`.sessions` (open, list, read) and :mod:`.actions` (model steps, accept,
mask export)."""
from clinloop.server.routes import actions, meta, sessions

ROUTERS = (meta.router, sessions.router, actions.router)
