"""voice-sim: rehearse difficult customer calls aloud, offline."""

__version__ = "0.1.0"
