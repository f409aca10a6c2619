"""Public API routes, one module per resource, mounted under /api/v1."""
