"""The multi-process path on CPU: two processes via ``paddle.distributed.launch`` (gloo)."""
import json
import os
import subprocess
import sys

import numpy as np
import paddle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs scripts/train.py's main() in each process, then saves that process's final weights.
# Rank 0 writes to OUT; any other rank is given OUT_rank<r>, which must stay absent.
DRIVER = """
import os, sys
sys.path.insert(0, {scripts!r})
import train as cli  # before paddle, as a script does (Paddle 2.6: see paddle_vits.utils.compat, "zlib")
import paddle

rank = paddle.distributed.get_rank()
out, params_dir = sys.argv[1], sys.argv[2]
res = cli.main(sys.argv[3:] + ["--output", out if rank == 0 else f"{{out}}_rank{{rank}}"])
paddle.save(res["model"].state_dict(), os.path.join(params_dir, f"rank{{rank}}.pdparams"))
if res["ema"] is not None:
    paddle.save(res["ema"].state_dict(), os.path.join(params_dir, f"ema{{rank}}.pdparams"))
print(f"rank {{rank}} world {{paddle.distributed.get_world_size()}} done", flush=True)
"""


def _launch(tmp_path, cifar_tar, extra):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(scripts=os.path.join(REPO, "scripts")))
    out, params, logs = tmp_path / "out", tmp_path / "params", tmp_path / "logs"
    params.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PADDLE_", "FLAGS_"))}
    env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p])  # this checkout
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(logs),
           str(driver), str(out), str(params),
           "--data", cifar_tar, "--model", "cait_xxs_24", "--model-kwargs", '{"depth": 2}', "--img-size", "32",
           "--epochs", "2", "--batch-size", "10", "--lr", "1e-3", "--mixup", "0.8", "--drop-path", "0.1",
           "--workers", "0", "--no-progress", "--no-visualdl", *extra]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    worker_logs = {p.name: p.read_text() for p in logs.iterdir() if p.is_file()} if logs.is_dir() else {}
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:] + str({k: v[-2000:] for k, v in worker_logs.items()})
    all_logs = "\n".join(worker_logs.values())
    assert "rank 0 world 2 done" in all_logs and "rank 1 world 2 done" in all_logs
    return out, params, all_logs


def test_two_cpu_processes_train_in_step(tmp_path, cifar_tar):
    out, params, all_logs = _launch(tmp_path, cifar_tar, [])

    # Gradients are averaged across ranks: both end with the same weights, equal to the saved ones.
    w0, w1 = paddle.load(str(params / "rank0.pdparams")), paddle.load(str(params / "rank1.pdparams"))
    final = paddle.load(str(out / "final.pdparams"))
    for k in w0:
        np.testing.assert_array_equal(np.asarray(w0[k]), np.asarray(w1[k]), err_msg=k)
        np.testing.assert_array_equal(np.asarray(w0[k]), np.asarray(final[k]), err_msg=k)

    # Only rank 0 writes outputs (and prints the epoch lines).
    assert not (tmp_path / "out_rank1").exists()
    for name in ("final.pdparams", "best.pdparams", "checkpoint.pdckpt", "log.json", "curves.png", "predictions.png"):
        assert (out / name).is_file(), name
    log = json.load(open(out / "log.json"))
    assert log["world_size"] == 2 and log["steps_per_epoch"] == 10  # 200 images / (10 per process x 2)
    assert log["step"] == 20 and len(log["epochs"]) == 2
    assert np.mean([s["loss"] for s in log["steps"][-3:]]) < np.mean([s["loss"] for s in log["steps"][:3]])
    epoch_lines = [line for line in all_logs.splitlines() if line.startswith("epoch 1/")]
    assert len(epoch_lines) == 1


def test_two_processes_with_accumulation_and_ema_end_equal(tmp_path, cifar_tar):
    """Accumulation skips the all-reduce on inner micro-batches (no_sync): the ranks still end equal,
    in the raw weights and in the EMA."""
    out, params, _ = _launch(tmp_path, cifar_tar, ["--accum-steps", "2", "--batch-size", "6", "--epochs", "1",
                                                   "--model-ema", "--model-ema-decay", "0.9"])
    for name in ("rank", "ema"):
        w0, w1 = paddle.load(str(params / f"{name}0.pdparams")), paddle.load(str(params / f"{name}1.pdparams"))
        for k in w0:
            np.testing.assert_array_equal(np.asarray(w0[k]), np.asarray(w1[k]), err_msg=f"{name} {k}")
    log = json.load(open(out / "log.json"))
    assert log["steps_per_epoch"] == 8  # 200 images / (6 x 2 micro-batches x 2 processes)
    assert "val_acc_ema" in log["final"] and (out / "final_ema.pdparams").is_file()
