# Checked data pointers of NumPy arrays for the inference kernels' entry points (textually included where used).
#
# Why not typed memoryviews there: acquiring one costs ~0.3 us (a call with four took 1.40 us, with the same
# arrays as plain ndarrays 0.15 us, on the Zen 3), and a batch-1 convolution's call passed four or five: about a
# third of its ~3.5 us fixed cost, paid by every layer of every request. These checks are the memoryviews' own.

cimport numpy as cnp

cnp.import_array()


cdef inline float* f32_data(cnp.ndarray a, int ndim, bint writable, str what) except NULL:
    """The data of ``a``, checked to be a C-contiguous, native-order float32 array of ``ndim`` dimensions (any
    number when ``ndim`` is -1; and writable when ``writable``); ``what`` names the argument in the ValueError
    otherwise. Not necessarily aligned to 4 bytes: the kernels load unaligned (an array Dask unpickles may start
    anywhere in its frame), as the memoryviews accepted."""
    if a is None:
        raise ValueError(f"{what}: expected a float32 array, got None")
    if (cnp.PyArray_TYPE(a) != cnp.NPY_FLOAT32 or (ndim >= 0 and cnp.PyArray_NDIM(a) != ndim)
            or not cnp.PyArray_IS_C_CONTIGUOUS(a)
            or not cnp.PyArray_ISNOTSWAPPED(a)
            or (writable and not cnp.PyArray_ISWRITEABLE(a))):
        o = <object>a
        rank = f"{ndim} dimensions" if ndim >= 0 else "any shape"  # (formatted only here: off the calls' path)
        raise ValueError(f"{what}: expected a C-contiguous {'writable ' if writable else ''}float32 array of "
                         f"{rank}, got {o.dtype} of shape {o.shape} (C-contiguous "
                         f"{bool(o.flags.c_contiguous)}, writable {bool(o.flags.writeable)})")
    return <float*>cnp.PyArray_DATA(a)


cdef inline Py_ssize_t same_size(cnp.ndarray x, cnp.ndarray y, str what) except -1:
    """The number of elements of ``x`` and of ``y``, checked to be equal (element-wise kernels on any shape)."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    if cnp.PyArray_SIZE(y) != n:
        raise ValueError(f"{what}: y has shape {(<object>y).shape}, x {(<object>x).shape}: expected as many elements")
    return n
