"""Delivery: record an issue, queue and send its batches through a transport, settle outcomes."""
