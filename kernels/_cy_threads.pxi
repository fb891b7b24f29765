# The OpenMP thread rules shared by the Cython kernel modules (textually included in each).

cdef enum:
    SERIAL_WORK = 16384  # element operations a thread must get for waking it to pay (one region: ~1.35 us here)

# The process-wide cap on a region's threads (0: none). OpenMP counts the host's cores and its own count is per
# calling thread; dropcore holds its regions to the CPUs the process may use (kernels/threads.py sets it).
cdef int _max_threads = 0


def set_max_threads(int n):
    """Cap every OpenMP region of this module at ``n`` threads, process-wide (0: no cap)."""
    global _max_threads
    _max_threads = n


cdef inline int max_threads() noexcept nogil:
    """Threads a region may use: OpenMP's count for the calling thread, within the process-wide cap."""
    cdef int n = openmp.omp_get_max_threads()
    return n if _max_threads <= 0 or n < _max_threads else _max_threads


cdef inline int team_size(Py_ssize_t work, Py_ssize_t tasks) noexcept nogil:
    """OpenMP threads for a region of ``work`` element operations in ``tasks`` tasks: as many as the work pays for
    (``SERIAL_WORK`` each; one for small work, where a team costs more than it saves), at most ``tasks``."""
    return <int>max(1, min(<Py_ssize_t>max_threads(), min(tasks, work // SERIAL_WORK)))
