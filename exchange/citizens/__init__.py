"""Citizen control: consents and explicit requests with a preview (issue 23)."""
