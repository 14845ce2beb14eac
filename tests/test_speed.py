"""Speed plumbing: MKL's fast path on AMD CPUs, and the side-by-side timing against the PyTorch twin."""
import os
import time

import numpy as np
import paddle
import pytest

from paddle_vits import create_model
from paddle_vits.utils.cpu import copy_views_eagerly, cpu_vendor, keep_freed_memory, use_fast_mkl_path


def test_fast_mkl_path_only_on_amd_and_never_over_an_explicit_value():
    env = {}
    assert use_fast_mkl_path(env, vendor="AuthenticAMD") == "5" and env == {"MKL_DEBUG_CPU_TYPE": "5"}
    env = {}
    assert use_fast_mkl_path(env, vendor="GenuineIntel") is None and env == {}
    env = {"MKL_DEBUG_CPU_TYPE": "0"}
    assert use_fast_mkl_path(env, vendor="AuthenticAMD") == "0"


class _FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


def test_keep_freed_memory_sets_malloc_unless_the_user_chose():
    libc = _FakeLibc()
    assert keep_freed_memory({}, libc=libc) and libc.calls == [(-4, 0), (-1, 1 << 30)]  # M_MMAP_MAX, M_TRIM_THRESHOLD
    for env in ({"PADDLE_VITS_MALLOC": "system"}, {"MALLOC_MMAP_MAX_": "65536"}, {"GLIBC_TUNABLES": "x"}):
        libc = _FakeLibc()
        assert not keep_freed_memory(env, libc=libc) and libc.calls == []


def test_copy_views_eagerly_leaves_an_explicit_flag_alone():
    try:
        before = paddle.get_flags(["FLAGS_use_stride_kernel"])
    except ValueError:
        pytest.skip("this Paddle has no stride kernels")
    assert not copy_views_eagerly({"FLAGS_use_stride_kernel": "1"})
    assert paddle.get_flags(["FLAGS_use_stride_kernel"]) == before
    if not paddle.is_compiled_with_cuda() and "FLAGS_use_stride_kernel" not in os.environ:
        assert before == {"FLAGS_use_stride_kernel": False}  # set by import paddle_vits on this CPU build
        x = paddle.arange(6.0).reshape([2, 3])
        view = x.transpose([1, 0])
        x[0, 0] = 5.0
        assert float(view[0, 0]) == 0.0  # a dense copy, not a view of x


def test_cpu_vendor_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\n")
    assert cpu_vendor(str(info)) == "AuthenticAMD"
    assert cpu_vendor(str(tmp_path / "missing")) == ""


def test_import_sets_the_fast_path_on_this_machine():
    if cpu_vendor() == "AuthenticAMD":
        assert os.environ.get("MKL_DEBUG_CPU_TYPE")
    else:
        assert "MKL_DEBUG_CPU_TYPE" not in os.environ or os.environ["MKL_DEBUG_CPU_TYPE"] != ""


TINY = {
    "cait_xxs_24": dict(img_size=32, embed_dim=48, depth=2, num_heads=4),
    "crossvit_9_dagger_224": dict(img_size=120),
    # The official-code twins (PADDLE_VITS_OFFICIAL_CODE: a folder holding wavevit.py + torch_wavelets.py
    # and/or models/crossformer.py, see torch_twin.find_official_code); the parity fixtures' tiny configs.
    "wavevit_s": dict(img_size=64, stem_hidden_dim=8, embed_dims=[16, 32, 48, 64], num_heads=[2, 2, 4, 4],
                      mlp_ratios=[2, 2, 2, 2], depths=[1, 2, 1, 1], sr_ratios=[2, 1, 1, 1]),
    "crossformer_t": dict(img_size=32, group_size=[4, 4, 4, 4]),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_compare_torch_runs_on_tiny_configs_and_prints_ratios(name):
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    from paddle_vits.convert import convert_state_dict
    from paddle_vits.utils.torch_twin import Contention, TorchTwin, twin_source

    code = os.environ.get("PADDLE_VITS_OFFICIAL_CODE")
    if twin_source(name, code) is None:
        pytest.skip(f"no official code for {name}: set PADDLE_VITS_OFFICIAL_CODE to its folder")
    kwargs = TINY[name]
    model = create_model(name, num_classes=10, **kwargs)
    twin = TorchTwin(name, 10, kwargs["img_size"], 2, 1, kwargs, torch_code=code)
    try:
        sd, _ = convert_state_dict(twin.state_dict, model)
        model.set_state_dict(sd)
        model.eval()
        with paddle.no_grad():
            out = model(paddle.to_tensor(twin.probe)).numpy()
        np.testing.assert_allclose(out, twin.logits, atol=1e-4, rtol=1e-4)  # the same weights on both sides
        x = paddle.randn([2, 3, kwargs["img_size"], kwargs["img_size"]])
        with Contention([os.getpid(), twin.proc.pid]) as c, paddle.no_grad():
            start = time.perf_counter()
            for _ in range(3):
                model(x)
            t_pd = (time.perf_counter() - start) / 3
        t_pt = twin.time("infer", 3, 1)
        reset, rss = twin.reset_peak()
        t_pt_train = twin.time("train", 2, 1)
        assert t_pd > 0 and t_pt > 0 and t_pt_train > 0 and c.other_cpu_s >= 0 and c.cores[os.getpid()] > 0
        assert rss > 0 and twin.peak_mib >= (rss if reset else 0)  # the training peak, measured in the child
        print(f"{name} tiny: paddle/torch inference ratio {t_pt / t_pd:.2f} (other CPU {c.other_cpu_s:.2f} s)")
    finally:
        twin.close()


def test_attend_sdpa_on_cpu_switch_gives_the_same_numbers(monkeypatch):
    from paddle_vits.layers import attention

    q, k, v = (paddle.randn([2, 5, 3, 8]) for _ in range(3))
    mask = paddle.randn([1, 3, 5, 5])
    drop = paddle.nn.Dropout(0.0)
    drop.eval()
    explicit = attention.attend(q, k, v, 0.3, drop, fused=False, mask=mask).numpy()
    assert not attention.SDPA_ON_CPU  # the default: the written-out maths on CPU (faster there)
    np.testing.assert_array_equal(attention.attend(q, k, v, 0.3, drop, fused=True, mask=mask).numpy(), explicit)
    monkeypatch.setattr(attention, "SDPA_ON_CPU", True)
    np.testing.assert_allclose(attention.attend(q, k, v, 0.3, drop, fused=True, mask=mask).numpy(), explicit,
                               atol=1e-5, rtol=1e-5)
