"""Benchmarks: the figures of docs/benchmarks.md and the commands that measure them.

The top layer (``model ← engines ← stream ← bench``): it may import every other product folder and
nothing imports it. ``engines.py`` is ``clipmg-bench`` (the backends against eager PyTorch),
``cache.py`` the live worker's caches against re-encoding a window, ``e2e.py`` the whole live
recognizer on a paced video, ``pose.py`` the MediaPipe backend against stock Holistic, ``streams.py``
how many cameras one machine sustains (one recognizer batching them against one process a camera);
``drive.py`` drives the shipped worker one frame at a time (for ``cache.py`` and the tests),
``procs.py`` starts the recognizer processes and always stops them, and ``flops.py`` measures the
matmul ceiling that ``clipmg-bench`` compares its rates with.
"""
