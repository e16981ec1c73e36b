"""The built-in demo model: its checkpoint and its ONNX export (``stream/demo.py``)."""
