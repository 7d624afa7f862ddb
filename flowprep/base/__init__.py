"""The lowest layer: what every other layer may use (durable file writes). Imports nothing of flowprep but errors."""
