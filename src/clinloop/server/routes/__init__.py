"""One ``APIRouter`` per area: :mod:`.meta` (page, info, worklist, profile),
:mod:`.sessions` (open, list, read) and :mod:`.actions` (model steps, accept,
mask export), :mod:`.viewer` (intensity, markers, slice strip) and :mod:`.raters`
(the experts' masks beside the proposal)."""
from clinloop.server.routes import actions, meta, raters, sessions, viewer

ROUTERS = (meta.router, sessions.router, actions.router, viewer.router, raters.router)
