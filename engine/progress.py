"""Per-epoch progress for ``fit``: a tqdm bar with running loss/accuracy and ETA (verbose=1), or one line (2)."""
import sys


class EpochProgress:
    def __init__(self, epoch, epochs, n_batches, verbose, has_metric):
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
