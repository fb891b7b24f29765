"""Benchmarks of dropcore against its NumPy reference engine, PyTorch CPU and ONNX Runtime.

- ``python -m bench`` runs the reference models end to end and prints one table (see :mod:`bench.runner`).
- ``pytest bench/`` runs the per-kernel pytest-benchmark suite (forward and backward, every kernel set).

The peers (``torch``, ``onnx``/``onnxruntime``, ``matplotlib``) are optional: what is missing is reported, not
required.
"""
