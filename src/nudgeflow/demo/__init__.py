"""`nudgeflow demo`: the demo run (run.py) and the traffic it generates (traffic.py)."""
