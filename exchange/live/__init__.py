"""Live services: a grant's calls passed through to the provider's own API."""
