"""The machine line of a benchmark report: CPU model, cores, threads used, library versions, OPENBLAS_CORETYPE."""
import os
import platform


def _cpuinfo():
    """The first processor's fields of /proc/cpuinfo ({} elsewhere)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def amd_core(family, model):
    """The core of an AMD CPU from its family and model numbers, or None: a cloud VM's model name is often just
    "AMD EPYC", and the core (its vector units, its caches) is what a table's numbers depend on."""
    if family == 23:
        return "Zen 2" if model >= 0x30 else "Zen"
    if family == 25:
        return "Zen 4" if 0x10 <= model <= 0x1F or 0x60 <= model <= 0xAF else "Zen 3"
    if family == 26:
        return "Zen 5"
    return None


def cpu_model():
    """The CPU's model name, with its core where the name does not say it (from AMD's family and model numbers)."""
    fields = _cpuinfo()
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    if fields.get("vendor_id") == "AuthenticAMD" and "Zen" not in name:
        try:
            core = amd_core(int(fields["cpu family"]), int(fields["model"]))
        except (KeyError, ValueError):
            core = None
        name += f" ({core})" if core else ""
    return name


def cpu_id():
    """The CPU's family, model and stepping numbers ("" where /proc/cpuinfo does not give them)."""
    fields = _cpuinfo()
    keys = ("cpu family", "model", "stepping")
    return ", ".join(f"{k} {fields[k]}" for k in keys if k in fields)


def isas():
    """``(the dropcore target the engines load, the targets this CPU runs)``: what a table's dropcore numbers
    depend on (``DROPCORE_ISA`` may force one below the CPU's best)."""
    from dropcore.kernels import isa

    offered = isa.cpu_isas()
    try:
        used = isa.choose(os.environ.get(isa.ENV), offered, isa.built_isas())
    except ImportError:  # no Cython kernels built: the Numba kernels on BLAS
        used = None
    return used, offered


def _version(module):
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def info(threads):
    """A dict describing the machine and the software measured."""
    from . import peers_onnx, peers_torch

    import dropcore

    used, offered = isas()
    return {
        "cpu": cpu_model(), "cpu_id": cpu_id(), "isa": used, "cpu_isas": offered, "cores": os.cpu_count(),
        "threads": threads, "python": platform.python_version(),
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
    ident = f"{m['cpu_id']}; " if m.get("cpu_id") else ""
    isa = f" ({ident}runs {', '.join(m['cpu_isas'])}; dropcore's {m['isa'] or 'Numba'} kernels)" if m.get("cpu_isas") \
        else ""
    return f"{m['cpu']}{isa}, {m['cores']} cores, {m['threads']} threads used; {libs}{blas}{load}"


def section(m):
    """What a report's table is for: the CPU and the dropcore target measured (one table each in RESULTS.md)."""
    return f"{m['cpu']}, {m.get('isa') or 'Numba'} kernels"
