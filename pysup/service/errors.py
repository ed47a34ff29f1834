"""``ServiceLoadError`` on its own: the daemon and the gateways catch it without importing the
plan loader and template engine that raise it (issue 18: those load with the first plan)."""

from __future__ import annotations


class ServiceLoadError(Exception):
    """A service could not be loaded (bad plan, template, spec); ``str()`` names file and line."""
