"""Observer profiles: how a pose estimator sees a person, fitted to real keypoints (see ``model/observation.py``)."""
