"""HTTP routes, one module per group; each is thin and calls into the service modules."""
