"""Extraction: settings (config), one video -> a record (pipeline, extract), what it needs of the host (memory),
a dataset -> shards (batch), repair and the run report. Above store and runners, which it drives; below quality,
interchange and the command line."""
