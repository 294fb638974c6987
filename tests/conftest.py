"""Suite-wide settings: one intra-op thread per test process (xdist runs one process per core, and
oversubscribed OpenMP threads spin), the Hub offline, and `../shared/data` located for the tests that use it."""
import os
from pathlib import Path

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_HUB_DISABLE_TELEMETRY', '1')

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'


@pytest.fixture(scope='session')
def shared_data() -> Path:
    """The real images beside the checkout (CI has them too); skip cleanly where they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f'{SHARED_DATA} not found (the shared data folder beside the checkout)')
    return SHARED_DATA
