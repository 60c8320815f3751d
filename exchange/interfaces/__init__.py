"""Interfaces: a grant's records served by key (single and batch), as pages and as Arrow streams."""
