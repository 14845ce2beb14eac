"""``scripts/quantize.py`` end to end on a small input (slow: it builds, calibrates and converts a
full CaiT-XXS-24 and CrossFormer-T, the two families with layers whose forward does not always run, and
exports both programs of each). The figures it prints are not checked, only that each
measurement is reported and the int8 model agrees with the fp32 one."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cait_xxs_24", "crossformer_t"])
def test_quantize_script_reports_accuracy_and_speed(name):
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    res = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "quantize.py"), "--models", name,
                          "--img-size", "32", "--batch-size", "2", "--calib-batches", "1", "--eval-images", "4",
                          "--repeats", "1", "--threads", "1"], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout
    agreement = float(re.search(r"top-1 agreement int8/fp32 ([0-9.]+)", out).group(1))
    error = float(re.search(r"logit error ([0-9.]+)", out).group(1))
    assert agreement >= 0.75 and 0 < error < 0.1, out
    assert re.search(r"eager, batch 2, 1 threads: fp32 .* fake-quant int8 .* speed-up x[0-9.]+", out)
    assert "Paddle Inference fp32: jit.load error vs eager" in out
    assert "Paddle Inference int8: jit.load error vs eager" in out


def test_quantize_script_rejects_weights_for_several_models():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    res = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "quantize.py"), "--weights", "w.pdparams"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == ("error: --weights needs exactly one --models entry "
                                                   "(run the script once per model)")
