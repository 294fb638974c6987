"""fold_batchnorms (deploy/batchnorm_folding.py): BNs folded into their convs in float64, rounded once, before a
compiled runtime's cast, only where the exported graph shows the conv's output feeds the BN alone."""
import copy

import timm
import torch
from timm.layers import BatchNormAct2d
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

import timm_recal  # noqa: F401  (registers the models)
from conftest import randomize_bn_
from timm_recal_deploy.batchnorm_folding import conv_batchnorm_pairs, fold_batchnorms
from timm_recal_deploy.compile_fusion import PointwiseConvGate
from timm_recal_deploy.compiled import prepare_for_compile

C = 8


class StdConv(nn.Conv2d):
    """A Conv2d subclass whose forward changes its weight (as weight standardization does): not foldable."""

    def forward(self, x):
        return self._conv_forward(x, self.weight - self.weight.mean(), self.bias)


class Mixed(nn.Module):
    """One foldable pair and five that must stay: a conv output that is also a residual, a BN called twice, a
    conv that transforms its weight, a BN after a ReLU and timm's BN with a built-in activation."""

    def __init__(self):
        super().__init__()
        self.plain = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C), nn.ReLU())
        self.conv_res, self.bn_res = nn.Conv2d(C, C, 1), nn.BatchNorm2d(C)
        self.conv_a, self.conv_b, self.bn_shared = nn.Conv2d(C, C, 1), nn.Conv2d(C, C, 1), nn.BatchNorm2d(C)
        self.std, self.bn_std = StdConv(C, C, 3, padding=1), nn.BatchNorm2d(C)
        self.conv_act, self.bn_act = nn.Conv2d(C, C, 1), nn.BatchNorm2d(C)
        self.conv_bnact, self.bnact = nn.Conv2d(C, C, 1), BatchNormAct2d(C, act_layer=nn.ReLU)

    def forward(self, x):
        x = self.plain(x)
        y = self.conv_res(x)
        x = self.bn_res(y) + y
        x = self.bn_shared(self.conv_a(x)) + self.bn_shared(self.conv_b(x))
        x = self.bn_std(self.std(x))
        return self.bnact(self.conv_bnact(self.bn_act(torch.relu(self.conv_act(x)))))


def _mixed() -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn_(Mixed()).eval()


def test_only_a_conv_output_that_feeds_the_bn_alone_is_paired():
    assert conv_batchnorm_pairs(_mixed(), torch.randn(2, 3, 8, 8)) == [('plain.0', 'plain.1')]


def test_fold_is_exact_and_leaves_the_rest():
    model = _mixed()
    folded = copy.deepcopy(model)
    assert fold_batchnorms(folded, (3, 8, 8)) == 1
    assert isinstance(folded.plain[1], nn.Identity) and folded.plain[0].bias is not None
    assert all(type(getattr(folded, n)) is nn.BatchNorm2d for n in ('bn_res', 'bn_shared', 'bn_std', 'bn_act'))
    assert type(folded.bnact) is BatchNormAct2d
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)


def test_the_fold_is_done_in_float64_before_any_cast():
    """The folded weight is float64's fold rounded to FP32 (one more rounding when a runtime casts it to BF16),
    not one made of BF16 numbers."""
    model = _mixed()
    expected = fuse_conv_bn_eval(copy.deepcopy(model.plain[0]).double(), copy.deepcopy(model.plain[1]).double())
    expected = expected.float()
    prepared = prepare_for_compile(model, (3, 8, 8))
    assert torch.equal(prepared.plain[0].weight, expected.weight)
    assert torch.equal(prepared.plain[0].bias, expected.bias)
    assert type(model.plain[1]) is nn.BatchNorm2d  # the caller's module is untouched


def test_no_input_size_or_a_model_that_does_not_export_changes_nothing():
    model = _mixed()
    assert fold_batchnorms(model, None) == 0 and type(model.plain[1]) is nn.BatchNorm2d

    class Branchy(nn.Module):  # data-dependent control flow: torch.export refuses it
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, C, 1), nn.BatchNorm2d(C)

        def forward(self, x):
            return self.bn(self.conv(x)) if x.sum() > 0 else x

    branchy = Branchy().eval()
    assert fold_batchnorms(branchy, (3, 4, 4)) == 0 and type(branchy.bn) is nn.BatchNorm2d


def test_every_bn_after_a_conv_of_a_gated_resnet_folds_and_the_early_squeeze_stays():
    """seresnet-style bottlenecks: conv1..3, the downsample and the stem fold; conv3 + bn3 still becomes the
    early-squeeze gate (``PointwiseConvGate``); outputs equal the unfolded model's."""
    model = randomize_bn_(timm.create_model('resnet26', block_args=dict(attn_layer='se'), num_classes=10)).eval()
    prepared = prepare_for_compile(model, (3, 64, 64))
    assert not [m for m in prepared.modules() if type(m) is nn.BatchNorm2d]
    assert sum(isinstance(m, PointwiseConvGate) for m in prepared.modules()) == 8
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), model(x), atol=1e-4, rtol=1e-4)


def test_a_fold_the_target_dtype_cannot_hold_is_left_to_the_graph():
    """A BN with a tiny running variance scales its conv's weights by 400 / sqrt(1e-5) = 126,491, past FP16's
    65,504: folded they would be inf in the FP16 model, so the pair stays for FP16 and folds for BF16 and FP32."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, C, 3, padding=1), nn.BatchNorm2d(C)).eval()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].running_var.fill_(1e-12)
        model[1].weight.fill_(400.0)
    folded = {dtype: fold_batchnorms(copy.deepcopy(model), (3, 8, 8), dtype)
              for dtype in (torch.float16, torch.bfloat16, torch.float32, None)}
    assert folded == {torch.float16: 0, torch.bfloat16: 1, torch.float32: 1, None: 1}
    assert type(prepare_for_compile(model, (3, 8, 8), torch.float16)[1]) is nn.BatchNorm2d
    assert type(prepare_for_compile(model, (3, 8, 8), torch.bfloat16)[1]) is nn.Identity
