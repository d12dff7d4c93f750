"""Nudgeflow: behavior-triggered email and push messaging, Segment-compatible."""

__version__ = "0.1.0"
