"""govshare: a data-sharing exchange and resource directory for government departments."""

__version__ = "0.1.0"
