"""Plain, vectorized NumPy versions of every kernel: the ground truth for tests and the benchmarks' baseline.

Layouts follow Keras: images channels-last ``(N, H, W, C)``, convolution kernels ``(kh, kw, in, out)``,
dense kernels ``(in, out)``. Every function works in the dtype it is given (float32 in use, float64 in gradient
checks).
"""
