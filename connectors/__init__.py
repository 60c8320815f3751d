"""Connectors: pull a department's data from where it lives into directory versions."""
