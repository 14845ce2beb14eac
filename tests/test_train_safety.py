"""Training never destroys a run: bad options, occupied output dirs, wrong data, mismatching resumes, kill -9.

The bad-input cases run ``scripts/train.py`` and assert exit status 2, the one-line message and that nothing
on disk changed. The kill -9 cases kill the trainer at random moments (during steps and during checkpoint
writes) and assert that resuming always ends with the weights of an uninterrupted run, bit for bit.
"""
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest

from paddle_vits.train import TrainConfig, TrainingError, build_parser, config_from_argv, load_checkpoint, train
from paddle_vits.train.config import FIELDS
from paddle_vits.utils.cli import run as cli_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "train.py")
TINY = ["--model", "cait_xxs_24", "--model-kwargs", '{"depth": 2}', "--img-size", "32", "--batch-size", "20",
        "--lr", "1e-3", "--no-progress", "--no-visualdl", "--threads", "1"]


def _env():
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    return {k: v for k, v in env.items() if not k.startswith("PADDLE_TRAINER")}


def _subprocess(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=timeout,
                          env=_env(), cwd=cwd)


def _load_script():
    spec = importlib.util.spec_from_file_location("train_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT_MODULE = _load_script()


def _cli(*args, cwd=None, timeout=None):
    """``scripts/train.py`` in this process, through its ``utils.cli.run`` error path."""
    out, err, old = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli_run(SCRIPT_MODULE._script, list(args))
    finally:
        os.chdir(old)
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def _snapshot(root):
    """{relative path: sha256} of every file under ``root`` (directories as None)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def _assert_one_line_error(r, *fragments):
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cifar_tar):
    """A finished 1-epoch run (10 steps) of the tiny CaiT, made through the CLI."""
    out = tmp_path_factory.mktemp("run") / "run"
    r = _subprocess(*TINY, "--data", os.path.basename(cifar_tar), "--output", str(out), "--epochs", "1",
                    "--workers", "0", cwd=os.path.dirname(cifar_tar))  # a relative --data
    assert r.returncode == 0, r.stderr[-3000:]
    return out


# --- every numeric option is range-checked; the message gives the valid range ---------------------------------

BAD_OPTIONS = [
    (["--clip-grad", "-1"], "--clip-grad -1.0 is out of range (valid: > 0, or leave it unset for no clipping)"),
    (["--clip-grad", "0"], "--clip-grad 0.0 is out of range (valid: > 0"),
    (["--max-steps", "0"], "--max-steps 0 is out of range (valid: >= 1, or leave it unset for all epochs)"),
    (["--warmup-epochs", "-1"], "--warmup-epochs -1.0 is out of range (valid: >= 0)"),
    (["--warmup-epochs", "3", "--epochs", "2"], "--warmup-epochs 3.0 is longer than --epochs 2"),
    (["--min-lr", "0.1", "--lr", "0.01"], "--min-lr 0.1 is above --lr 0.01"),
    (["--min-lr=-1e-5"], "--min-lr -1e-05 is out of range (valid: >= 0)"),
    (["--batch-size", "0"], "--batch-size 0 is out of range (valid: >= 1"),
    (["--epochs", "0"], "--epochs 0 is out of range (valid: >= 1"),
    (["--epochs", "-3"], "--epochs -3 is out of range"),
    (["--lr", "0"], "--lr 0.0 is out of range (valid: > 0"),
    (["--lr", "nan"], "--lr nan is out of range"),
    (["--lr", "inf"], "--lr inf is out of range"),
    (["--weight-decay", "-0.1"], "--weight-decay -0.1 is out of range (valid: >= 0)"),
    (["--smoothing", "1"], "--smoothing 1.0 is out of range (valid: [0, 1))"),
    (["--mixup", "-0.5"], "--mixup -0.5 is out of range (valid: >= 0)"),
    (["--cutmix", "-1"], "--cutmix -1.0 is out of range (valid: >= 0)"),
    (["--mixup-prob", "1.5"], "--mixup-prob 1.5 is out of range (valid: [0, 1])"),
    (["--drop-path", "1.5"], "--drop-path 1.5 is out of range (valid: [0, 1))"),
    (["--img-size", "0"], "--img-size 0 is out of range (valid: [1, 1024]"),
    (["--img-size", "100000"], "--img-size 100000 is out of range"),
    (["--workers", "-1"], "--workers -1 is out of range (valid: [0, 64])"),
    (["--seed", "-1"], "--seed -1 is out of range (valid: [0, 4294967295])"),
    (["--save-every", "-2"], "--save-every -2 is out of range (valid: >= 0)"),
    (["--threads", "0"], "--threads 0 is out of range (valid: [1, 1024]"),
    (["--val-batch-size", "0"], "--val-batch-size 0 is out of range (valid: >= 1"),
    (["--epochs", "1.5"], "argument --epochs: invalid int value: '1.5'"),
    (["--opt", "sgd"], "argument --opt: invalid choice: 'sgd'"),
    (["--model-kwargs", "[1, 2]"], "argument --model-kwargs: '[1, 2]' is not a JSON object"),
    (["--model-kwargs", "{depth: 2}"], "argument --model-kwargs: not JSON"),
    (["--model-kwargs", '{"img_size": 64}'], "sets an option train.py sets itself"),
    (["--mixup", "0.8", "--batch-size", "15"], "--batch-size 15 is odd"),
    (["--model", "cait_xxs24x"], "unknown model 'cait_xxs24x'"),
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["--output", ""], "--output is empty"),
    (["--pretrained", "/nonexistent/w.pdparams"], "--pretrained /nonexistent/w.pdparams: weights file not found"),
    (["--resume", "/nonexistent/run"], "--resume /nonexistent/run: no training checkpoint at"),
]


@pytest.mark.parametrize("args,message", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_option_is_one_line_exit_2_and_touches_nothing(tmp_path, cifar_tar, args, message):
    out = tmp_path / "out"
    before = _snapshot(tmp_path)
    r = _cli("--data", cifar_tar, "--output", str(out), *args, cwd=tmp_path, timeout=120)
    _assert_one_line_error(r, message)
    assert _snapshot(tmp_path) == before


def test_an_output_that_is_a_file(tmp_path, cifar_tar):
    (tmp_path / "out").write_text("keep me")
    before = _snapshot(tmp_path)
    r = _cli(*TINY, "--data", cifar_tar, "--output", str(tmp_path / "out"))
    _assert_one_line_error(r, "cannot write to output dir", "it is a file", "pass a writable --output")
    assert _snapshot(tmp_path) == before


def test_range_checks_hold_for_the_api_too(cifar_tar, tmp_path):
    with pytest.raises(TrainingError, match=r"--clip-grad -1 is out of range \(valid: > 0"):
        train(TrainConfig(data=cifar_tar, output=str(tmp_path / "o"), clip_grad=-1))
    with pytest.raises(TrainingError, match=r"--batch-size must be an integer, got '20'"):
        train(TrainConfig(data=cifar_tar, output=str(tmp_path / "o"), batch_size="20"))
    with pytest.raises(TrainingError, match=r"--progress must be true or false, got 1"):
        train(TrainConfig(data=cifar_tar, output=str(tmp_path / "o"), progress=1))
    assert os.listdir(tmp_path) == []


# --- the CLI is generated from the schema ---------------------------------------------------------------------------

def test_every_field_is_an_option_with_its_default():
    parser = build_parser()
    flags = {s for a in parser._actions for s in a.option_strings}
    for name, f in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        assert (flag if not (f.type is bool and f.default) else "--no-" + name.replace("_", "-")) in flags, name
    cfg = config_from_argv([])
    assert cfg == TrainConfig()
    cfg = config_from_argv(["--batch-size", "8", "--no-progress", "--amp", "--model-kwargs", '{"depth": 2}'])
    assert (cfg.batch_size, cfg.progress, cfg.amp, cfg.model_kwargs) == (8, False, "float16", {"depth": 2})


def test_help_lists_ranges_and_recipe_defaults():
    text = build_parser().format_help()
    assert "valid: > 0" in text and "default: no clipping" in text and "crossvit" in text


# --- an output directory that holds a run ----------------------------------------------------------------------------

def test_a_run_is_never_replaced_without_overwrite(finished_run, cifar_tar):
    before = _snapshot(finished_run)
    r = _cli(*TINY, "--data", cifar_tar, "--output", str(finished_run), "--epochs", "1", "--workers", "0")
    _assert_one_line_error(r, f"{finished_run} holds a run (checkpoint.pdckpt", f"--resume {finished_run}",
                           "--overwrite")
    assert _snapshot(finished_run) == before


def test_overwrite_replaces_the_run(finished_run, cifar_tar, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    (copy / "notes.txt").write_text("mine")
    r = _cli(*TINY, "--data", cifar_tar, "--output", str(copy), "--epochs", "1", "--max-steps", "2",
             "--workers", "0", "--overwrite")
    assert r.returncode == 0, r.stderr[-2000:]
    log = json.load(open(copy / "log.json"))
    assert [s["step"] for s in log["steps"]] == [1, 2] and log["epochs"] == []
    assert not (copy / "best.pdparams").exists() or log["final"]["step"] == 2
    assert (copy / "notes.txt").read_text() == "mine"  # only the run's own files are replaced


@pytest.mark.parametrize("args,message", [
    (["--overwrite"], "--overwrite and --resume exclude each other"),
    (["--output", "elsewhere"], "is not the resumed run's directory"),
    (["--lr", "0.5"], "cannot change --lr 0.5 (saved: 0.001)"),
    (["--epochs", "3"], "cannot change --epochs 3 (saved: 1)"),
    (["--opt", "adam", "--seed", "1"], "cannot change --seed 1 (saved: 42)"),
    (["--model", "wavevit_s"], "cannot change --model wavevit_s (saved: cait_xxs_24)"),
    (["--max-steps", "5"], "--max-steps 5 is below the checkpoint's step 10"),
])
def test_resume_refuses_what_it_cannot_honour(finished_run, tmp_path, args, message):
    before = _snapshot(finished_run)
    r = _cli("--resume", str(finished_run), *args, cwd=tmp_path, timeout=120)
    _assert_one_line_error(r, message)
    assert _snapshot(finished_run) == before and not (tmp_path / "elsewhere").exists()


def test_resume_from_another_directory_finds_the_data(finished_run, tmp_path):
    # The saved --data is absolute; --resume also takes the checkpoint file itself.
    r = _cli("--resume", str(finished_run / "checkpoint.pdckpt"), "--workers", "0", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resumed {finished_run} at step 10/10" in r.stdout


# --- data -----------------------------------------------------------------------------------------------------------

def test_a_missing_data_path_is_an_error_not_the_cache(tmp_path):
    r = _subprocess(*TINY, "--data", str(tmp_path / "cifar-10-pyhton.tar.gz"), "--output", str(tmp_path / "o"),
             cwd=tmp_path, timeout=120)
    _assert_one_line_error(r, "cifar-10-pyhton.tar.gz does not exist", "check --data")
    assert os.listdir(tmp_path) == []


def _write_tar(path, per_batch, test, seed=0):
    from _cifar_synth import write_cifar_tar

    return write_cifar_tar(str(path), per_batch=per_batch, test=test, seed=seed)


def test_resume_on_data_of_another_size_says_what_differs(finished_run, tmp_path):
    other = _write_tar(tmp_path / "cifar-10-python.tar.gz", per_batch=50, test=100)
    before = _snapshot(finished_run)
    r = _cli("--resume", str(finished_run), "--data", other, cwd=tmp_path, timeout=120)
    _assert_one_line_error(r, "does not match the checkpoint", "train_images 200 -> 250", "steps_per_epoch 10 -> 12")
    assert _snapshot(finished_run) == before


def test_resume_on_other_data_of_the_same_size(finished_run, tmp_path):
    other = _write_tar(tmp_path / "cifar-10-python.tar.gz", per_batch=40, test=100, seed=5)
    r = _cli("--resume", str(finished_run), "--data", other, cwd=tmp_path, timeout=120)
    _assert_one_line_error(r, "does not match the checkpoint", "labels_crc32")


def test_resume_with_weights_that_do_not_fit(cifar_tar, tmp_path):
    train(TrainConfig(model="cait_xxs_24", model_kwargs=dict(depth=2), data=cifar_tar, output=str(tmp_path),
                      img_size=32, batch_size=20, epochs=1, max_steps=2, lr=1e-3, workers=0, progress=False,
                      visualdl=False))
    ckpt = load_checkpoint(tmp_path)
    ckpt["model"]["extra.weight"] = np.zeros(3, np.float32)
    ckpt["model"]["head.bias"] = np.zeros(7, np.float32)
    paddle.save(ckpt, str(tmp_path / "checkpoint.pdckpt"))
    with pytest.raises(TrainingError, match=r"weights do not fit cait_xxs_24 \(unexpected extra.weight, "
                                            r"head.bias \(7,\) vs \(10,\)\)"):
        train(TrainConfig(resume=str(tmp_path), progress=False))


@pytest.mark.parametrize("content", [b"", b"\x80\x04garbage", b"not a pickle at all"])
def test_resume_from_a_damaged_checkpoint(finished_run, tmp_path, content):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    (copy / "checkpoint.pdckpt").write_bytes(content)
    before = _snapshot(copy)
    r = _cli("--resume", str(copy), cwd=tmp_path)
    _assert_one_line_error(r, "checkpoint.pdckpt is not a readable pickle", "truncated, corrupt or crafted")
    assert _snapshot(copy) == before


def test_resume_from_a_checkpoint_without_its_state(finished_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    ckpt = load_checkpoint(copy)
    del ckpt["optimizer"]
    paddle.save(ckpt, str(copy / "checkpoint.pdckpt"))
    r = _cli("--resume", str(copy), cwd=tmp_path)
    _assert_one_line_error(r, "is not a training checkpoint written by paddle_vits.train (no valid optimizer)")


def test_resume_with_a_damaged_log_keeps_training(finished_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    (copy / "log.json").write_text("{not json")
    r = _cli("--resume", str(copy), "--workers", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "log.json is unreadable" in r.stdout and json.load(open(copy / "log.json"))["step"] == 10


def test_stale_temps_are_removed_at_start(finished_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    stale = [copy / ".checkpoint.pdckpt.tmp-abc123", copy / ".best.pdparams.tmp-x_9"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    r = _cli("--resume", str(copy), "--workers", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not any(p.exists() for p in stale)


# --- kill -9 ----------------------------------------------------------------------------------------------------------

def _children(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_dataloader_workers_die_with_the_trainer(cifar_tar, tmp_path):
    p = subprocess.Popen([sys.executable, SCRIPT, *TINY, "--data", cifar_tar, "--output", str(tmp_path / "o"),
                          "--epochs", "50", "--workers", "2"], env=_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    workers = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(workers) < 2:
            workers = _children(p.pid)
            time.sleep(0.05)
        assert len(workers) >= 2, "the trainer started no DataLoader workers"
        p.send_signal(signal.SIGKILL)
        p.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.05)
        assert not [w for w in workers if _alive(w)]
    finally:
        if p.poll() is None:
            p.kill()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)


def _final_params(out):
    return {k: np.asarray(v) for k, v in paddle.load(str(out / "final.pdparams"), return_numpy=True).items()}


def _wait_for(predicate, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.002)
    return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kill -9")
def test_kill_9_at_random_moments_always_resumes_bit_exactly(cifar_tar, tmp_path):
    # Mixup, drop-path and per-step checkpoints: every step draws random numbers and writes a checkpoint.
    opts = [*TINY, "--data", cifar_tar, "--epochs", "2", "--mixup", "0.8", "--drop-path", "0.1", "--save-every", "1",
            "--workers", "0"]
    ref = tmp_path / "ref"
    assert _subprocess(*opts, "--output", str(ref)).returncode == 0
    out = tmp_path / "killed"
    rng = random.Random(1234)
    # The first kill waits for the first checkpoint: a run killed inside its first write has nothing to resume.
    kinds = ["step", "checkpoint write", "step", "checkpoint write", "step", "checkpoint write", "step"]
    kills, steps_at_kill = 0, []
    for kind in kinds:
        resume = (out / "checkpoint.pdckpt").is_file()
        args = ["--resume", str(out), "--workers", "0", "--no-progress", "--threads", "1"] if resume else \
            [*opts, "--output", str(out)]
        p = subprocess.Popen([sys.executable, SCRIPT, *args], env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        if kind == "checkpoint write":
            hit = _wait_for(lambda: any(n.startswith(".checkpoint.pdckpt.tmp-") for n in _listdir(out)), p)
            time.sleep(rng.uniform(0, 0.02))
        else:
            mtime = _mtime(out / "checkpoint.pdckpt")
            hit = _wait_for(lambda: _mtime(out / "checkpoint.pdckpt") != mtime, p)
            time.sleep(rng.uniform(0, 0.3))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += hit
        p.wait()
        assert p.returncode in (0, -signal.SIGKILL), p.stderr.read()[-2000:]
        if p.returncode == 0:
            break
        steps_at_kill.append(int(load_checkpoint(out)["step"]))  # always readable after a kill
    assert kills >= 3 and len(set(steps_at_kill)) >= 3, (kills, steps_at_kill)
    print("killed", kills, "times; checkpoint steps after each kill:", steps_at_kill)
    r = _subprocess("--resume", str(out), "--workers", "0", "--no-progress", "--threads", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert not [n for n in os.listdir(out) if ".tmp-" in n]
    a, b = _final_params(ref), _final_params(out)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert [s["loss"] for s in json.load(open(ref / "log.json"))["steps"]] == \
        [s["loss"] for s in json.load(open(out / "log.json"))["steps"]]


def _listdir(path):
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None
