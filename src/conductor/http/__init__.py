"""The HTTP server: app, middleware, errors, guard, metrics, admin routes."""
