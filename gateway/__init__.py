"""The public gateway: auth, search aggregation, uploads, admin, jobs, the web app."""
