"""Discovery: the local engines already running on this machine, found on loopback.

A newcomer's llama.cpp server on 8080, vLLM on 8000 or KoboldCpp on 5001 answers through
DEMI with no config key: the default ports of the common engines are probed at start-up
(``llm.discover``, on by default; ``llm.discover_ports`` overrides the ports) and every
``health_check_interval``, and what answers joins the chain after the configured providers
and before the embedded model.

    engines.py     the engines, their default ports, what tells each apart
    identify.py    one port: what answers there (the only network code)
    scan.py        one pass over the ports
    entries.py     from an engine found to a provider entry and the YAML that keeps it
    keeper.py      DiscoveredProviders: adds what it finds, drops what went away
"""

from collections.abc import Collection, Sequence

from .engines import DEFAULT_PORTS, ENGINES, Engine
from .entries import config_yaml, provider_entry, provider_name
from .identify import Found
from .keeper import DiscoveredProviders, loopback_port
from .scan import scan

__all__ = [
    "DEFAULT_PORTS",
    "ENGINES",
    "DiscoveredProviders",
    "Engine",
    "Found",
    "config_yaml",
    "find_engines",
    "loopback_port",
    "provider_entry",
    "provider_name",
    "scan",
    "suggested_entry",
]


async def find_engines(
    ports: Sequence[int] = (), *, timeout: float = 2.0,  # noqa: ASYNC109 (a bound)
) -> list[Found]:
    """The engines answering on ``ports`` (empty: the default ports), changing nothing:
    what ``status --discover`` lists."""
    return await scan(ports or DEFAULT_PORTS, timeout=timeout)


def suggested_entry(found: Found, taken: Collection[str] = ()) -> tuple[str, str]:
    """(provider name, one line of YAML) that keeps ``found`` in the chain for good."""
    name = provider_name(found, taken)
    return name, config_yaml(found, name)
