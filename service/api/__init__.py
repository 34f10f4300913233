"""The HTTP side: the app, its routes, request parsing, admission and the one error shape."""
