"""Trial (not kept): conv3 of a gated bottleneck as a matrix product, so that inductor's C++ GEMM template
(max_autotune, CPP backend) may fuse relu(acc * g + shortcut) as its epilogue, against oneDNN's conv + a loop.

    python benchmarks/compiled/gemm_epilogue_trial.py 16 64 256 56 {base,gated,mm,mmauto}

Prints the median call time of one block tail at batch N, C_in -> C_out, HxH maps (README, compiled engines).
"""
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch._inductor import config as ic
torch.set_num_threads(2)
N, CIN, COUT, H = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
mode = sys.argv[5]
torch.manual_seed(0)
class Base(nn.Module):      # resnet tail: relu(bn(conv(h)) + s)
    def __init__(s):
        super().__init__(); s.conv = nn.Conv2d(CIN, COUT, 1, bias=False); s.bn = nn.BatchNorm2d(COUT)
    def forward(s, h, sc, g): return F.relu(s.bn(s.conv(h)) + sc)
class Gated(Base):          # current: oneDNN conv, then relu(a*g + s)
    def forward(s, h, sc, g): return F.relu(s.bn(s.conv(h)) * g[:, :, None, None] + sc)
class GatedMM(Base):        # conv as a matmul on the channels_last view, BN folded by hand
    def forward(s, h, sc, g):
        scale = s.bn.weight / torch.sqrt(s.bn.running_var + s.bn.eps)
        w = s.conv.weight.flatten(1) * scale[:, None]; b = s.bn.bias - s.bn.running_mean * scale
        n, c, hh, ww = h.shape
        a = (h.permute(0, 2, 3, 1).reshape(n * hh * ww, c) @ w.t() + b).view(n, hh * ww, -1)
        y = F.relu(a * g[:, None, :] + sc.permute(0, 2, 3, 1).reshape(n, hh * ww, -1))
        return y.view(n, hh, ww, -1).permute(0, 3, 1, 2)
m = {'base': Base, 'gated': Gated, 'mm': GatedMM, 'mmauto': GatedMM}[mode]().eval()
with torch.no_grad():
    m.bn.running_var.uniform_(.5, 1.5); m.bn.weight.uniform_(.5, 1.5)
cl = torch.channels_last
h = torch.randn(N, CIN, H, H).to(memory_format=cl); sc = torch.randn(N, COUT, H, H).to(memory_format=cl)
g = torch.rand(N, COUT)
ic.freezing = True
if mode == 'mmauto':
    ic.max_autotune = True; ic.max_autotune_gemm_backends = 'CPP,ATEN'
with torch.no_grad():
    ref = Gated.forward(m, h, sc, g) if mode != 'base' else None
    c = torch.compile(m, fullgraph=True)
    t0 = time.time(); y = c(h, sc, g); ct = time.time() - t0
    if ref is not None: torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)
    for _ in range(5): c(h, sc, g)
    ts = []
    for _ in range(7):
        t = time.perf_counter(); k = 0
        while time.perf_counter() - t < 0.5: c(h, sc, g); k += 1
        ts.append((time.perf_counter() - t) / k)
    ts.sort()
print(f'{mode:7s} N={N} {CIN}->{COUT} {H}x{H}: {ts[3]*1e3:.3f} ms (compile {ct:.0f} s)')
