"""digest: weekly newsletter digests from RSS/Atom feeds."""

__version__ = "0.1.0"
