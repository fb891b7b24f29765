"""Per-epoch progress for ``fit``: a tqdm bar with running loss/accuracy and ETA (verbose=1), or one line (2).

A bar needs a terminal (or a notebook) to redraw in place: written to a file or a pipe, each redraw is a new frame
(22 KB of them for one short run). There verbose=1 prints what verbose=2 does, one line per epoch.
"""
import sys


def _redraws(stream):
    """Whether ``stream`` shows a progress bar in place: a terminal, or a Jupyter kernel (tqdm.auto draws a widget)."""
    if "ipykernel" in sys.modules:
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class EpochProgress:
    def __init__(self, epoch, epochs, n_batches, verbose, has_metric):
        if verbose == 1 and not _redraws(sys.stdout):
            verbose = 2
        self.verbose = verbose
        self.prefix = f"Epoch {epoch + 1}/{epochs}"
        self.bar = None
        if verbose == 1:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=n_batches, desc=self.prefix, unit="batch", leave=True, dynamic_ncols=True,
                            file=sys.stdout)

    def update(self, logs):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)

    def close(self, logs=None):
        if self.bar is not None:
            if logs:
                self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
            self.bar.close()
            self.bar = None
        elif self.verbose == 2 and logs:
            print(f"{self.prefix} - " + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
