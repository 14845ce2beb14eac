"""MAC counter (``paddle_vits.utils.flops``): hand-computed counts on tiny models, and
whole models against published / fvcore-measured figures."""
import paddle
import paddle.nn.functional as F
import pytest

import paddle_vits
from paddle_vits.utils.flops import count_macs, mac_counter


class Tiny(paddle.nn.Layer):
    """Conv, Linear, LayerNorm, explicit attention matmuls and SDPA, with known MACs."""

    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 8, kernel_size=4, stride=4)  # 16x16 -> 4x4, 16 tokens
        self.norm = paddle.nn.LayerNorm(8)
        self.qkv = paddle.nn.Linear(8, 24, bias_attr=False)
        self.head = paddle.nn.Linear(8, 5)

    def forward(self, x):
        x = self.conv(x).flatten(2).transpose([0, 2, 1])  # [B, 8, 4, 4] -> [B, 16, 8]
        q, k, v = self.qkv(self.norm(x)).reshape([0, 16, 3, 2, 4]).unbind(2)  # [B, 16, 24] -> 3 x [B, 16, 2, 4]
        y = F.scaled_dot_product_attention(q, k, v)  # [B, 16, 2, 4]
        qt, kt = q.transpose([0, 2, 1, 3]), k.transpose([0, 2, 1, 3])  # [B, 16, 2, 4] -> [B, 2, 16, 4]
        attn = qt @ kt.transpose([0, 1, 3, 2])  # [B, 2, 16, 16]
        z = paddle.matmul(attn, v.transpose([0, 2, 1, 3]))  # [B, 2, 16, 4]
        x = x + y.reshape([0, 16, 8]) + z.transpose([0, 2, 1, 3]).reshape([0, 16, 8])
        return self.head(x.mean(axis=1))


def test_tiny_model_by_hand():
    b = 2
    conv = b * 8 * 4 * 4 * (3 * 4 * 4)  # out elements x (C_in x kernel)
    norm = b * 16 * 8 * 5  # fvcore convention: 5 per element with affine
    qkv = b * 16 * 8 * 24
    sdpa = b * 2 * 16 * 16 * (4 + 4)  # heads x L_q x L_k x (D for q k^T + D_v for attn v)
    explicit = b * 2 * 16 * 16 * 4 * 2  # the same two products written with @ and paddle.matmul
    head = b * 8 * 5
    r = count_macs(Tiny(), inputs=paddle.randn([b, 3, 16, 16]))
    assert r.by_op == dict(conv=conv, layer_norm=norm, linear=qkv + head, sdpa=sdpa, matmul=explicit)
    assert r.macs == conv + norm + qkv + sdpa + explicit + head
    assert r.calls == dict(conv=1, layer_norm=1, linear=2, sdpa=1, matmul=2)  # nothing counted twice


def test_functional_ops_and_restore():
    originals = (paddle.matmul, paddle.Tensor.__matmul__, F.linear, F.conv2d_transpose, paddle.einsum)
    x, y = paddle.randn([3, 4, 5]), paddle.randn([3, 5, 6])
    with mac_counter() as c:
        paddle.bmm(x, y)
        paddle.einsum("bij,bjk->bik", x, y)
        paddle.matmul(x, y.transpose([0, 2, 1]), transpose_y=True)
        paddle.matmul(x.transpose([0, 2, 1]), y, transpose_x=True)
        F.conv2d_transpose(paddle.randn([1, 4, 3, 3]), paddle.randn([4, 2, 2, 2]), stride=2)  # [C_in, C_out, k, k]
        F.conv2d(paddle.randn([1, 4, 6, 6]), paddle.randn([8, 2, 3, 3]), groups=2)  # -> [1, 8, 4, 4]
    per_matmul = 3 * 4 * 6 * 5
    assert c.by_op == dict(matmul=3 * per_matmul, einsum=per_matmul,
                           conv_transpose=(4 * 3 * 3) * (2 * 2 * 2), conv=(8 * 4 * 4) * (2 * 3 * 3))
    assert (paddle.matmul, paddle.Tensor.__matmul__, F.linear, F.conv2d_transpose, paddle.einsum) == originals


def test_batch_scales_linearly_and_mode_restored():
    model = Tiny()
    model.train()
    one = count_macs(model, input_size=(3, 16, 16), batch_size=1).macs
    assert count_macs(model, input_size=(3, 16, 16), batch_size=3).macs == 3 * one
    assert model.training


# Published GMACs (timm's model tables, counted with fvcore), batch 1 at the default eval size.
PUBLISHED_GMACS = {
    "cait_xxs_24": 2.53,  # timm cait_xxs24_224
    "cait_s_24": 9.35,  # timm cait_s24_224
    "cait_m_48_448": 329.4,  # timm cait_m48_448
}
# fvcore's FlopCountAnalysis on timm 1.0's torch models (attention unfused, batch 1), measured with
# fvcore 0.1.5: the counter reproduces these exactly (same ops, same conventions).
FVCORE_MACS = {
    "crossvit_9_224": 1_848_921_600,  # timm crossvit_9_240
    "cait_xxs_24": 2_533_076_160,  # timm cait_xxs24_224
    "cait_s_24": 9_346_529_664,  # timm cait_s24_224
    "cait_xxs_24_384": 9_627_341_760,  # timm cait_xxs24_384
}


def _require(name):
    return paddle_vits.create_model(name)  # an unregistered name fails: a lost registration must not skip


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[pytest.mark.slow] if g > 5 else [], id=n) for n, g in PUBLISHED_GMACS.items()
])
def test_published_gmacs(name):
    gmacs = count_macs(_require(name)).gmacs
    assert gmacs == pytest.approx(PUBLISHED_GMACS[name], rel=0.05)


@pytest.mark.parametrize("name", list(FVCORE_MACS))
def test_matches_fvcore_exactly(name):
    assert count_macs(_require(name)).macs == FVCORE_MACS[name]
