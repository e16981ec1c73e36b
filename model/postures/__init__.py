"""Posture profiles: how real people sit, fitted to real keypoints (see ``model/posture.py``)."""
