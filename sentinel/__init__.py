"""Stock Sentinel: command line and settings."""

__version__ = "0.1.0"
