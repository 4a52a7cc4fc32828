"""A progress bar on the terminal for the CLI and the demo (napari has its own)."""
from __future__ import annotations

from tqdm import tqdm


class ConsoleProgress:
    """A progress bar drawn from the first completed step on: nothing is drawn while the
    parameters are checked and the data read, and its rate and ETA count the steps after the
    first (which carries start-up work: loading a prior, a classical warm start). Left on a
    line of its own when the run fails, so that the error message starts on a fresh line."""

    def __init__(self, description: str, *, keep: bool = False):
        self.description = description
        self.keep = keep
        self.bar = None

    def __call__(self, done: int, total: int, note: str = "") -> None:
        if self.bar is None:
            if done <= 0:
                return
            self.bar = tqdm(total=total, initial=done, desc=self.description, unit="step",
                            leave=self.keep)
        self.bar.total = total
        self.bar.n = done
        if note:
            self.bar.set_postfix_str(note, refresh=False)
        self.bar.refresh()

    def __enter__(self) -> ConsoleProgress:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if self.bar is not None:
            self.bar.leave = self.keep or kind is not None
            self.bar.close()
