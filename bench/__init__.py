"""DEMI's benchmark: ``python -m bench`` (``make bench``); see bench/README.md.

Four targets on loopback, measured in interleaved rounds: the fake upstream called directly,
the floor (a bare aiohttp pass-through proxy), DEMI's conductor and, when installed, LiteLLM's
proxy. The result is one table, printed and written to ``bench/results/latest.md``.
"""
