"""One module per dataset layout; each registers itself (see clinloop.data.registry)."""
