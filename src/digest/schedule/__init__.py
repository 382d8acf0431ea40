"""The long-running weekly scheduler (APScheduler) and its heartbeat."""
