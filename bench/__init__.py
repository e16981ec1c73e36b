"""Benchmarks: the figures of docs/benchmarks.md and the commands that measure them.

The top layer (``model ← engines ← stream ← bench``): it may import every other product folder and
nothing imports it. ``engines.py`` is ``clipmg-bench`` (the backends against eager PyTorch),
``cache.py`` the live worker's caches against re-encoding a window, ``e2e.py`` the whole live
recognizer on a paced video, ``pose.py`` the MediaPipe backend against stock Holistic; ``drive.py``
drives the shipped worker one frame at a time (for ``cache.py`` and the tests) and ``flops.py``
measures the matmul ceiling that ``clipmg-bench`` compares its rates with.
"""
