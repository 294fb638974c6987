"""Hold a real ``timm-recal`` process at a named point (``timm_recal.pause_points``), then signal it or let it go
on: faults land exactly where a test means them to, on a loaded machine too."""
import os
import shutil
import subprocess
import sys
import time
from typing import List, Optional

from timm_recal.pause_points import PAUSE_AT, PAUSE_FILE


def cli() -> List[str]:
    """The installed console script (what users run), else ``python -m timm_recal_cli``."""
    exe = shutil.which('timm-recal', path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, '-m', 'timm_recal_cli']


class Held:
    """A process started with ``argv`` that stops at ``point``; ``wait_held()`` returns once it is there."""

    def __init__(self, argv: List[str], point: str, marker: str, env: Optional[dict] = None, cwd=None):
        self.marker = marker
        full_env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1',
                    PAUSE_AT: point, PAUSE_FILE: marker, **(env or {})}
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                                     cwd=cwd)

    def wait_held(self, timeout: float = 240) -> None:
        t0 = time.monotonic()
        while not os.path.exists(self.marker):
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError(f'exited ({self.proc.returncode}) before the pause point: {err[-2000:]}')
            assert time.monotonic() - t0 < timeout, 'the pause point was never reached'
            time.sleep(0.01)

    def release(self) -> None:
        os.remove(self.marker)

    def signal(self, sig: int, timeout: float = 120):
        """Send ``sig`` to the held process; ``(returncode, stdout, stderr)`` once it has ended."""
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        if os.path.exists(self.marker):
            os.remove(self.marker)
        return self.proc.returncode, out, err
