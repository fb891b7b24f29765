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


# Whether regions of large tasks hand them out in claims (``chunk``); off only for A/B measurements and tests.
cdef bint _balance = True


def set_balance(bint on):
    """Whether regions of large tasks hand them out in claims (``True``, the default; see ``chunk``) or in one equal
    share per thread, as a static schedule does (``False``); the results are the same bits either way."""
    global _balance
    _balance = on


cdef enum:
    # The element operations from which a claim of tasks is worth a shared atomic (``chunk``): ~10 us of a core
    BALANCE_WORK = 8 * SERIAL_WORK


cdef inline Py_ssize_t chunk(Py_ssize_t tasks, int nthreads, double task_work, double grain) noexcept nogil:
    """Tasks an OpenMP thread claims at a time in a ``schedule="dynamic"`` region of ``tasks`` tasks of ``task_work``
    each: enough for ``grain`` of work, when that leaves eight or more claims a thread, so that a core slowed by a
    neighbour, a CPU quota or another process's thread does fewer of them and the others the rest; else (a batch-1
    layer's few small tasks) one equal share per thread, as a static schedule.

    Measured on the 2-core Zen 3 (batch 64, 2 threads, claims against equal shares in one process, alternating): a
    CPU-bound process on the second core made the VGG-style model's prediction 1.45x and its training step 1.42x
    slower with equal shares; on an idle machine claims still gained 4-7% (ResNet-8), 6-11% (VGG) and 2-8% in
    training, where the two cores do not run at one speed. Claims of one task each cost a batch-1 ResNet-8 3% (its
    layers have 8 tasks of ~0.6 MFLOP), hence the eight claims a thread."""
    cdef Py_ssize_t equal = (tasks + nthreads - 1) // max(1, nthreads)
    cdef Py_ssize_t per = max(1, <Py_ssize_t>(grain / task_work) if task_work > 0 else tasks)
    if _balance and per * 8 <= equal:
        return per
    return max(1, equal)


def claim_size(Py_ssize_t tasks, int nthreads, double task_work, double grain):
    """``chunk``'s answer, for tests: the tasks a thread claims at a time in a region of ``tasks`` tasks."""
    return chunk(tasks, nthreads, task_work, grain)
