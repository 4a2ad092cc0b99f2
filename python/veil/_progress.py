"""Progress of long steps (key generation) for people at a terminal: a tqdm bar when tqdm is
installed, a plain line otherwise, nothing when stderr is not a terminal or when silenced."""

from __future__ import annotations

import sys
from typing import Callable, Optional

Callback = Callable[[str, float], None]


def reporter(description: str, show: Optional[bool] = None) -> Optional[Callback]:
    """A callback(step, fraction) for `description`, or None for silence. show=None shows
    progress only when stderr is a terminal."""
    if show is None:
        show = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    if not show:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        bar = tqdm(total=100, desc=description, unit="%", leave=False, file=sys.stderr)

        def update(step: str, fraction: float) -> None:
            bar.set_postfix_str(step)
            bar.update(max(0, int(fraction * 100) - bar.n))
            if fraction >= 1.0:
                bar.close()

        return update

    def line(step: str, fraction: float) -> None:
        print("\r%s: %s %3d%%" % (description, step, int(fraction * 100)), end="\n" if fraction >= 1.0 else "",
              file=sys.stderr, flush=True)

    return line
