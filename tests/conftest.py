"""Suite-wide settings: one intra-op thread per test process (xdist runs one process per core, and
oversubscribed OpenMP threads spin), the Hub offline, Ctrl-C as a terminal delivers it, and `../shared/data`
located for the tests that use it."""
import os
import signal
from pathlib import Path

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_HUB_DISABLE_TELEMETRY', '1')

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(1)

# A shell starts a background job (`cmd &` without job control) with SIGINT ignored, and an ignored signal stays
# ignored across exec: the commands the tests interrupt with SIGINT would never see it (three tests hung so). A
# Python handler is reset to the default at exec, so the children get SIGINT as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: pytest filter for torch's warning that torch.jit.script is deprecated: users still ship TorchScript to C++
#: runtimes, so the tests script every model anyway (``@pytest.mark.filterwarnings(TORCHSCRIPT_DEPRECATION)``)
TORCHSCRIPT_DEPRECATION = r'ignore:`torch\.jit\.script` is deprecated:FutureWarning'

SHARED_DATA = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'


@pytest.fixture(scope='session')
def shared_data() -> Path:
    """The real images beside the checkout (CI has them too); skip cleanly where they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f'{SHARED_DATA} not found (the shared data folder beside the checkout)')
    return SHARED_DATA


@torch.no_grad()
def randomize_bn_(model: nn.Module) -> nn.Module:
    """Random BatchNorm statistics and affines (timm zero-initialises the last BN of each residual block, which
    would make an equality test pass on a branch that computes nothing); seeded, so reproducible."""
    gen = torch.Generator().manual_seed(0)
    for bn in model.modules():
        if isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.affine and bn.track_running_stats:
            for t, lo, hi in ((bn.weight, 0.5, 1.5), (bn.bias, -0.3, 0.3), (bn.running_mean, -0.3, 0.3),
                              (bn.running_var, 0.5, 1.5)):
                t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)
    return model
