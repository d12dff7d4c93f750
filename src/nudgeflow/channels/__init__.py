"""The ways a message leaves Nudgeflow, behind one small interface (channels/base.py)."""
