"""The chain walk: one request over the provider order (attempts, hedging, retries,
continuation)."""
