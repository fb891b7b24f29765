# The OpenMP team size rule shared by the element-wise and pooling kernels (textually included).

cdef enum:
    SERIAL_WORK = 32768  # below this many element operations one thread is faster than waking a team


cdef inline int team_size(Py_ssize_t work, Py_ssize_t tasks) noexcept nogil:
    """OpenMP threads for a region: one for small work (a team costs more than it saves), else up to ``tasks``."""
    if work < SERIAL_WORK:
        return 1
    return <int>max(1, min(<Py_ssize_t>openmp.omp_get_max_threads(), tasks))
