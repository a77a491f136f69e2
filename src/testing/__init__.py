"""Test doubles shipped with DEMI, used by its tests and by ``bench/``.

Nothing in ``src.core``, ``src.llm`` or ``src.conductor`` imports this package, and it imports
none of them: the fakes speak the upstream servers' wire protocols from the outside.
"""
