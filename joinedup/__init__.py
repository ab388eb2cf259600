"""joinedup: composition only (configuration, the CLI, the HTTP API, pages, the demo)."""

__version__ = "0.1.0"
