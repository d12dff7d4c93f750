"""The Segment-spec HTTP Tracking API."""
