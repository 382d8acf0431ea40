"""The editor's local preview served by `digest preview`."""
