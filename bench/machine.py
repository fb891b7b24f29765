"""The machine line of a benchmark report: CPU model, cores, threads used, library versions, OPENBLAS_CORETYPE."""
import os
import platform


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(module):
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def info(threads):
    """A dict describing the machine and the software measured."""
    from . import peers_onnx, peers_torch

    import dropcore

    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
        "dropcore": dropcore.__version__, "numpy": _version("numpy"), "numba": _version("numba"),
        "torch": peers_torch.version(), "onnxruntime": peers_onnx.version(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"), "load_average_at_start": os.getloadavg()[0],
    }


def line(m):
    """One line for the report."""
    libs = ", ".join(f"{k} {m[k]}" for k in ("python", "dropcore", "numpy", "numba", "torch", "onnxruntime") if m[k])
    blas = f", OPENBLAS_CORETYPE={m['OPENBLAS_CORETYPE']}" if m["OPENBLAS_CORETYPE"] else ""
    # Other processes competing for the cores stall every parallel region: the load says how quiet the machine was.
    load = f"; 1-min load average at start {m['load_average_at_start']:.2f}"
    if m.get("load_average_at_end") is not None:
        load += f", at the end of the engine runs {m['load_average_at_end']:.2f}"
    return f"{m['cpu']}, {m['cores']} cores, {m['threads']} threads used; {libs}{blas}{load}"
