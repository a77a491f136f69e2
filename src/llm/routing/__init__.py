"""Routing: the order providers are tried in for one request.

``strategy.py`` says what a strategy is (a pure ``rank`` for whoever looks, ``choose`` for
the one request being routed); ``strategies.py`` holds failover, round-robin, nearest,
quality and affinity; ``canary.py`` the self-rolling-back canary; ``sticky.py`` keeps a
conversation on the provider holding its prompt cache; ``build.py`` makes the configured one.
"""
