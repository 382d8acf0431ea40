"""Feeds in: fetch with caps and retries, parse with feedparser, normalise to articles."""
