"""Fake Ollama and LM Studio servers in their own processes, breakable on command.

Start one with :class:`~src.testing.fakes.launcher.FakeServer`; see README.md beside this file.
"""
