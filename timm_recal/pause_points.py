"""Named points where a test holds a running command, so that a signal or a fault lands exactly there rather
than after a guessed delay (a loaded machine makes every delay a guess). For the tests only: without the
variable a point costs one environment lookup.

``TIMM_RECAL_TEST_PAUSE_AT=<point>`` and ``TIMM_RECAL_TEST_PAUSE_FILE=<marker>``: each time the process reaches
``<point>`` it writes its pid to ``<marker>`` and waits there until the marker is removed (the test lets it go on)
or a signal ends it. Standard library only: the first point is reached before torch is imported.

Points: ``import`` (``import timm_recal`` starts), ``train.epoch_end`` (an epoch's row and checkpoint are
written), ``quantize.calibrating`` (the first calibration batch was handed to ONNX Runtime).
"""
import os
import time

__all__ = ['PAUSE_AT', 'PAUSE_FILE', 'pause_point']

PAUSE_AT = 'TIMM_RECAL_TEST_PAUSE_AT'
PAUSE_FILE = 'TIMM_RECAL_TEST_PAUSE_FILE'


def pause_point(name: str) -> None:
    """Hold here while a test asks for ``name`` (see the module docstring)."""
    if os.environ.get(PAUSE_AT) != name or not os.environ.get(PAUSE_FILE):
        return
    marker = os.environ[PAUSE_FILE]
    staged = f'{marker}.{os.getpid()}.tmp'
    with open(staged, 'w') as f:
        f.write(str(os.getpid()))
    os.replace(staged, marker)  # whole: the test never reads a half-written marker
    while os.path.exists(marker):
        time.sleep(0.01)
