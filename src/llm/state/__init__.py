"""Provider state with one owner: registry, breakers, health, stats, history."""
