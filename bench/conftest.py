"""pytest-benchmark configuration for ``pytest bench/`` (kept apart from the default run: testpaths=tests)."""
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `pytest bench/` from anywhere: make the `bench` package importable
    sys.path.insert(0, str(REPO))

