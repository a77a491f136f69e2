"""Routing strategies: the order providers are tried in."""
