"""The embedded model's engine, run in a process of its own.

llama.cpp is native code: an illegal instruction on a CPU the build does not fit, a
segfault, or the OOM killer ends the process it runs in. DEMI exists to keep answering
when an engine dies, so its last-resort engine must not share DEMI's process.

* :mod:`.child` is what runs in that process: it loads the model, checks it by generating
  one token, then serves llama.cpp's OpenAI-compatible API on a socket the parent passed in.
* :mod:`.supervisor` is DEMI's side: it starts the child, watches it, words why it died,
  and restarts it with exponential backoff.

The embedded provider (:mod:`src.llm.providers.embedded`) talks to the child through
DEMI's ordinary OpenAI-compatible provider, so there is one HTTP client, not two.
"""
