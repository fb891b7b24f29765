"""Writes the op list of ``kernels/README.md`` from the contract: ``python -m dropcore.kernels.readme``.

The table sits between two marker comments; everything else in the README is written by hand.
``tests/kernels/test_contract_cases.py`` checks that the README lists exactly the contract's ops.
"""
import pathlib

from .contract import markdown

BEGIN, END = "<!-- ops: written by `python -m dropcore.kernels.readme` -->", "<!-- ops: end -->"
PATH = pathlib.Path(__file__).with_name("README.md")


def update(path=PATH):
    """Replace the table between the markers of ``path`` with :func:`dropcore.kernels.contract.markdown`."""
    text = path.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{markdown()}\n{END}{tail}")


if __name__ == "__main__":
    update()
    print(f"wrote the op list of {PATH}")
