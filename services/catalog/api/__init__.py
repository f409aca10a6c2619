"""HTTP routes of the catalog (all internal: the internal token guards every /v1 route)."""
