"""Package discovery for the ``src`` → ``demi`` mapping declared in pyproject.toml."""

from setuptools import find_packages, setup

setup(packages=["demi", *(f"demi.{name}" for name in find_packages("src"))])
