"""Errors a run can end with that are the user's to act on (the CLI prints them as one line, exit 2).

Kept free of heavy imports so the CLI can name them without importing torch.
"""


class NonFiniteLossError(RuntimeError):
    """The loss or the weights became NaN or infinite; the newest checkpoint left is the last good state."""
