"""Provider implementations: one small module per kind of server."""
