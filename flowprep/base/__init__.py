"""The lowest layer: what every other layer may use (durable file writes; dataclass defaults read from one
place). Imports nothing of flowprep but errors."""
