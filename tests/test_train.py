"""CIFAR-10 training on the synthetic archive: learning, outputs, resume, atomic checkpoints, bad input."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import paddle
import pytest

import paddle_vits
from paddle_vits.convert.pos_embed import resize_pos_embed, resize_pos_embeds
from paddle_vits.data.cifar import CifarError
from paddle_vits.train import (RECIPES, EpochBatchSampler, TrainConfig, TrainingError, load_checkpoint,
                               load_for_finetune, recipe_for, resolve_config, save_checkpoint, train)
from paddle_vits.train.config import DEFAULT_RECIPE, NATIVE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Small members of three families at 32 px (seconds per run on 2 cores).
TINY = {
    "cait_xxs_24": dict(depth=2),
    "crossformer_t": dict(depths=[1, 1, 1, 1], embed_dim=32, num_heads=[1, 2, 4, 8]),
    "wavevit_s": dict(depths=[1, 1, 1, 1], embed_dims=[32, 64, 64, 64], num_heads=[1, 2, 2, 2], stem_hidden_dim=16),
}


def _cfg(cifar_tar, out, model="cait_xxs_24", **kw):
    args = dict(model=model, model_kwargs=TINY[model], data=cifar_tar, output=str(out), img_size=32,
                batch_size=20, epochs=1, lr=1e-3, workers=0, progress=False, visualdl=False)
    args.update(kw)
    return TrainConfig(**args)


def _params(path):
    return {k: np.asarray(v) for k, v in paddle.load(str(path)).items()}


def _assert_same_params(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("model", sorted(TINY))
def test_a_few_steps_learn_the_synthetic_task(cifar_tar, tmp_path, model):
    res = train(_cfg(cifar_tar, tmp_path, model, epochs=2))
    log = json.load(open(tmp_path / "log.json"))
    losses = [s["loss"] for s in log["steps"]]
    assert len(losses) == res["step"] == 20  # 200 images / batch 20 x 2 epochs
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.3
    assert res["final"]["val_acc"] >= 0.3  # chance is 0.1
    assert [e["epoch"] for e in log["epochs"]] == [0, 1]


def test_outputs_of_a_run(cifar_tar, tmp_path):
    res = train(_cfg(cifar_tar, tmp_path, epochs=2))
    for name in ("best.pdparams", "best.pdopt", "final.pdparams", "final.pdopt", "checkpoint.pdckpt", "log.json",
                 "steps.csv", "epochs.csv", "curves.png", "predictions.png", "config.json", "classes.txt"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "classes.txt").read_text().split("\n")[:2] == ["airplane", "automobile"]
    assert not [n for n in os.listdir(tmp_path) if "tmp" in n]
    log = json.load(open(tmp_path / "log.json"))
    assert log["best_val_acc"] == max(e["val_acc"] for e in log["epochs"]) == res["best_val_acc"]
    assert log["final"]["val_img_per_s"] > 0 and log["final"]["step"] == 20
    assert open(tmp_path / "steps.csv").readline().strip() == "step,epoch,loss,lr"
    header = open(tmp_path / "epochs.csv").readline().strip().split(",")
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "val_img_per_s"} <= set(header)
    # The saved final weights reproduce the logged validation accuracy.
    model = paddle_vits.create_model("cait_xxs_24", num_classes=10, img_size=32, **TINY["cait_xxs_24"])
    model.set_state_dict(paddle.load(str(tmp_path / "final.pdparams")))
    assert _eval_acc(model, cifar_tar) == pytest.approx(log["final"]["val_acc"])


def _eval_acc(model, cifar_tar):
    from paddle_vits.data.cifar import read_cifar10
    from paddle_vits.data.datasets import CIFAR10
    from paddle_vits.data.train_transforms import eval_transform

    x, y = read_cifar10(cifar_tar)["test"]
    ds = CIFAR10(x, y, transform=eval_transform(32))
    images = np.stack([ds[i][0] for i in range(len(ds))])
    model.eval()
    with paddle.no_grad():
        pred = model(paddle.to_tensor(images)).argmax(-1).numpy()
    return float((pred == y).mean())


def test_resume_gives_the_uninterrupted_result(cifar_tar, tmp_path):
    # Mixup/CutMix and drop-path draw random numbers every step: resume must replay them.
    opts = dict(epochs=2, mixup=0.8, cutmix=1.0, drop_path=0.1)
    full = train(_cfg(cifar_tar, tmp_path / "full", **opts))
    first = train(_cfg(cifar_tar, tmp_path / "parts", max_steps=7, **opts))  # stops mid-epoch 0
    assert first["step"] == 7 and load_checkpoint(tmp_path / "parts")["step"] == 7
    train(TrainConfig(resume=str(tmp_path / "parts"), max_steps=13, workers=1, progress=False))
    rest = train(TrainConfig(resume=str(tmp_path / "parts"), progress=False))
    assert rest["step"] == full["step"] == 20
    _assert_same_params(_params(tmp_path / "parts" / "final.pdparams"), _params(tmp_path / "full" / "final.pdparams"))
    a = json.load(open(tmp_path / "full" / "log.json"))
    b = json.load(open(tmp_path / "parts" / "log.json"))
    assert [s["loss"] for s in a["steps"]] == [s["loss"] for s in b["steps"]]
    assert [e["val_acc"] for e in a["epochs"]] == [e["val_acc"] for e in b["epochs"]]
    opt_a = paddle.load(str(tmp_path / "full" / "final.pdopt"))
    opt_b = paddle.load(str(tmp_path / "parts" / "final.pdopt"))
    assert opt_a["LR_Scheduler"] == opt_b["LR_Scheduler"]


def test_resume_of_a_finished_run_changes_nothing(cifar_tar, tmp_path):
    train(_cfg(cifar_tar, tmp_path))
    before = _params(tmp_path / "final.pdparams")
    res = train(TrainConfig(resume=str(tmp_path), progress=False))
    assert res["step"] == 10
    _assert_same_params(before, _params(tmp_path / "final.pdparams"))


def test_resume_refuses_options_it_cannot_change(cifar_tar, tmp_path):
    train(_cfg(cifar_tar, tmp_path))
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    with pytest.raises(TrainingError) as e:
        train(TrainConfig(resume=str(tmp_path), lr=0.5, epochs=3, progress=False))
    msg = str(e.value)
    assert "cannot change --epochs 3 (saved: 1), --lr 0.5 (saved: 0.001)" in msg and "--max-steps" in msg
    assert {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)} == before


def test_a_crash_while_saving_keeps_the_last_checkpoint(cifar_tar, tmp_path, monkeypatch):
    train(_cfg(cifar_tar, tmp_path, epochs=2, max_steps=10))  # checkpoint at the end of epoch 0
    ckpt_path = tmp_path / "checkpoint.pdckpt"
    good = ckpt_path.read_bytes()
    real_save = paddle.save

    def crash_midway(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        with open(path, "r+b") as f:  # half written, then the process "dies"
            f.truncate(os.path.getsize(path) // 2)
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(paddle, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(resume=str(tmp_path), progress=False))
    monkeypatch.setattr(paddle, "save", real_save)
    assert ckpt_path.read_bytes() == good
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]
    assert load_checkpoint(tmp_path)["step"] == 10
    assert train(TrainConfig(resume=str(tmp_path), progress=False))["step"] == 20


def test_save_checkpoint_is_atomic(tmp_path, monkeypatch):
    layer = paddle.nn.Linear(2, 2)
    opt = paddle.optimizer.Adam(parameters=layer.parameters())
    sched = paddle.optimizer.lr.LambdaDecay(1.0, lambda s: 1.0)
    path = tmp_path / "c.pdckpt"
    save_checkpoint(str(path), layer, opt, sched, step=1)
    good = path.read_bytes()

    def fails(obj, target, *args, **kwargs):
        open(target, "wb").write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(paddle, "save", fails)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(str(path), layer, opt, sched, step=2)
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["c.pdckpt"]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(cifar_tar, tmp_path):
    # lr 1e30: the first step is finite, then the weights overflow and the loss becomes NaN.
    with pytest.raises(TrainingError) as e:
        train(_cfg(cifar_tar, tmp_path, lr=1e30, save_every=1, opt="adam"))
    msg = str(e.value)
    found = re.search(r"loss is (nan|inf|-inf) at step (\d+) \(epoch 1\); stopped", msg)
    assert found, msg
    assert str(tmp_path / "checkpoint.pdckpt") in msg and "--lr" in msg
    bad_step = int(found.group(2))
    assert bad_step >= 2  # here: step 2
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["step"] == bad_step - 1
    log = json.load(open(tmp_path / "log.json"))
    assert [s["step"] for s in log["steps"]] == list(range(1, bad_step))
    assert all(np.isfinite(np.asarray(v)).all() for v in ckpt["model"].values())


def test_amp_on_cpu_says_it_is_ignored(cifar_tar, tmp_path, capsys):
    train(_cfg(cifar_tar, tmp_path, amp="bfloat16", max_steps=1))
    assert "--amp bfloat16 ignored" in capsys.readouterr().out


def test_unknown_model(cifar_tar, tmp_path):
    with pytest.raises(TrainingError, match=r"unknown model 'cait_xxs24x'.*did you mean .*cait_xxs24"):
        train(TrainConfig(model="cait_xxs24x", data=cifar_tar, output=str(tmp_path)))


@pytest.mark.parametrize("model,size,hint", [("cait_xxs_24", 30, "multiple of 16"),
                                             ("crossvit_9_dagger_224", 32, "img_size such as")])
def test_image_size_the_model_cannot_take(cifar_tar, tmp_path, model, size, hint):
    cfg = TrainConfig(model=model, data=cifar_tar, output=str(tmp_path / "run"), img_size=size, progress=False)
    with pytest.raises(TrainingError, match=f"cannot build {model} with img_size={size}: .*{hint}"):
        train(cfg)
    assert os.listdir(tmp_path) == []


def test_model_errors_are_reported_as_they_are(cifar_tar, tmp_path):
    # A ValueError that has nothing to do with the image size keeps its own message.
    cfg = _cfg(cifar_tar, tmp_path / "run", model_kwargs=dict(depth=2, embed_dim=190))
    with pytest.raises(TrainingError) as e:
        train(cfg)
    assert "embed_dim=190" in str(e.value) and "does not fit" not in str(e.value)
    assert os.listdir(tmp_path) == []


def test_corrupt_archive(tmp_path):
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(b"\x1f\x8b" + os.urandom(2000))
    with pytest.raises(CifarError, match="cifar-10-python.tar.gz.*download"):
        train(_cfg(str(bad), tmp_path / "out"))


def test_unwritable_output_dir(cifar_tar, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(TrainingError, match="cannot write to output dir.*writable --output"):
        train(_cfg(cifar_tar, blocker / "run"))


def test_resume_from_a_dir_without_checkpoint(tmp_path):
    with pytest.raises(TrainingError, match="no training checkpoint at .*--resume takes the output dir"):
        train(TrainConfig(resume=str(tmp_path)))


@pytest.mark.parametrize("kw,msg", [(dict(batch_size=300), "cannot fill one batch"),
                                    (dict(mixup=0.8, batch_size=15), "even --batch-size"),
                                    (dict(amp="float8"), "--amp 'float8' is not one of its choices"),
                                    (dict(model_kwargs=dict(no_such_arg=1)),
                                     "cannot build cait_xxs_24 with the model arguments .*no_such_arg")])
def test_bad_options(cifar_tar, tmp_path, kw, msg):
    with pytest.raises(TrainingError, match=msg):
        train(_cfg(cifar_tar, tmp_path, **kw))


def test_cli_reports_bad_input_without_a_traceback(tmp_path):
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(b"not a tar")
    r = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "train.py"), "--model", "cait_xxs_24",
                        "--data", str(bad), "--output", str(tmp_path / "out"), "--img-size", "32"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]  # (Paddle may warn about OMP_NUM_THREADS first)
    assert last.startswith("error:") and "not a readable tar.gz" in last and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def _pretrained_file(tmp_path, img_size):
    """A 1000-class checkpoint of the tiny CaiT at ``img_size`` (stands in for converted ImageNet weights)."""
    paddle.seed(1)
    src = paddle_vits.create_model("cait_xxs_24", num_classes=1000, img_size=img_size, **TINY["cait_xxs_24"])
    path = tmp_path / f"imagenet_{img_size}.pdparams"
    paddle.save(src.state_dict(), str(path))
    return path, {k: v.numpy() for k, v in src.state_dict().items()}


def test_finetune_reinitialises_the_head_and_resizes_pos_embed(tmp_path):
    path, src = _pretrained_file(tmp_path, 64)  # 4x4 patch grid
    model = paddle_vits.create_model("cait_xxs_24", num_classes=10, img_size=32, **TINY["cait_xxs_24"])  # 2x2
    head_before = model.head.weight.numpy().copy()
    assert sorted(load_for_finetune(model, path, "cait_xxs_24")) == ["head.bias", "head.weight"]
    got = {k: v.numpy() for k, v in model.state_dict().items()}
    np.testing.assert_array_equal(got["head.weight"], head_before)
    assert got["head.weight"].shape == (192, 10)
    assert got["pos_embed"].shape == (1, 4, 192)
    np.testing.assert_allclose(got["pos_embed"], resize_pos_embed(src["pos_embed"], (2, 2)), rtol=1e-6)
    for k in got:
        if k not in ("head.weight", "head.bias", "pos_embed"):
            np.testing.assert_array_equal(got[k], src[k], err_msg=k)


def test_finetune_through_train(cifar_tar, tmp_path, capsys):
    path, _ = _pretrained_file(tmp_path, 64)
    res = train(_cfg(cifar_tar, tmp_path / "run", pretrained=str(path), max_steps=2))
    assert "re-initialised head.bias, head.weight" in capsys.readouterr().out
    assert res["model"].pos_embed.shape == [1, 4, 192]


def test_finetune_from_a_checkpoint_of_another_model(cifar_tar, tmp_path):
    other = paddle_vits.create_model("crossformer_t", num_classes=1000, img_size=32, **TINY["crossformer_t"])
    path = tmp_path / "other.pdparams"
    paddle.save(other.state_dict(), str(path))
    with pytest.raises(TrainingError, match="--pretrained .*does not fit"):
        train(_cfg(cifar_tar, tmp_path / "run", pretrained=str(path)))


def test_pos_embed_resize_constant_and_prefix():
    # A constant grid stays constant; CrossViT's class-token row is kept as is.
    pe = np.concatenate([np.full((1, 1, 8), 7.0), np.full((1, 16, 8), 0.5)], axis=1).astype(np.float32)
    out = resize_pos_embed(pe, (6, 6), num_prefix_tokens=1)
    assert out.shape == (1, 37, 8)
    np.testing.assert_allclose(out[:, 0], 7.0)
    np.testing.assert_allclose(out[:, 1:], 0.5, rtol=1e-5)
    model = paddle_vits.create_model("crossvit_9_dagger_224", num_classes=10, img_size=120)
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    small = {"pos_embed.0": sd["pos_embed.0"][:, :1 + 49], "pos_embed.1": sd["pos_embed.1"][:, :1 + 16]}
    resized = resize_pos_embeds(small, model)
    assert resized["pos_embed.0"].shape == sd["pos_embed.0"].shape
    assert resized["pos_embed.1"].shape == sd["pos_embed.1"].shape
    np.testing.assert_array_equal(resized["pos_embed.0"][:, 0], small["pos_embed.0"][:, 0])


@pytest.mark.torch
def test_pos_embed_resize_matches_timm():
    torch = pytest.importorskip("torch")
    timm_pos = pytest.importorskip("timm.layers")
    pe = np.random.default_rng(0).normal(size=(1, 1 + 9, 16)).astype(np.float32)
    ref = timm_pos.resample_abs_pos_embed(torch.from_numpy(pe), (5, 5), num_prefix_tokens=1,
                                          interpolation="bicubic", antialias=False).numpy()
    np.testing.assert_allclose(resize_pos_embed(pe, (5, 5), num_prefix_tokens=1), ref, rtol=1e-4, atol=1e-5)


def test_epoch_batch_sampler_shards_and_skips():
    ranks = [EpochBatchSampler(50, 4, seed=3, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(1)
    batches = [list(s) for s in ranks]
    assert len(batches[0]) == len(batches[1]) == 6  # 50 // (4 * 2)
    seen = [i for b in batches for batch in b for i in batch]
    assert len(seen) == len(set(seen)) == 48
    ranks[0].set_epoch(1, start_batch=4)
    assert list(ranks[0]) == batches[0][4:]
    ranks[0].set_epoch(2)
    assert list(ranks[0]) != batches[0]


def test_recipes_go_by_registry_family():
    # Every model and alias of a family gets that family's recipe; families without one the default.
    families = {paddle_vits.get_model_info(n).family for n in paddle_vits.list_models()}
    assert set(RECIPES) <= families
    for name in paddle_vits.list_models(include_aliases=True):
        info = paddle_vits.get_model_info(name)
        expected = dict(RECIPES.get(info.family, DEFAULT_RECIPE))
        if expected["img_size"] == NATIVE:
            expected["img_size"] = info.input_size[-1]
        assert recipe_for(name) == expected, name


@pytest.mark.parametrize("family", sorted(RECIPES))
def test_recipe_image_size_fits_every_model_of_its_family(family):
    for name in paddle_vits.list_models():
        if paddle_vits.get_model_info(name).family == family:
            with paddle.LazyGuard():
                paddle_vits.create_model(name, num_classes=10, img_size=recipe_for(name)["img_size"])


def test_recipe_fills_only_unset_options(cifar_tar, tmp_path):
    name = "crossvit_9_dagger_224"
    recipe = recipe_for(name)
    filled = resolve_config(TrainConfig(model=name))
    assert {k: getattr(filled, k) for k in recipe} == recipe
    mine = resolve_config(TrainConfig(model=name, batch_size=8, lr=0.01))
    assert (mine.batch_size, mine.lr, mine.epochs) == (8, 0.01, recipe["epochs"])


def test_plots_return_their_figure(tmp_path):
    from matplotlib.figure import Figure

    from paddle_vits.train import plot_curves, plot_predictions

    log = {"steps_per_epoch": 2, "steps": [{"step": 1, "epoch": 0, "loss": 2.0, "lr": 1e-3},
                                           {"step": 2, "epoch": 0, "loss": 1.5, "lr": 1e-3}],
           "epochs": [{"epoch": 0, "step": 2, "train_loss": 1.7, "train_acc": 0.3, "val_loss": 1.6, "val_acc": 0.4}],
           "final": {"step": 3, "val_loss": 1.4, "val_acc": 0.5}}
    fig = plot_curves(log)
    assert isinstance(fig, Figure) and os.listdir(tmp_path) == []
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [2, 1, 1, 1]  # steps, train, val, final
    images = np.zeros((3, 8, 8, 3), np.uint8)
    fig = plot_predictions(images, [0, 1, 2], [0, 2, 2], ["a", "b", "c"], path=str(tmp_path / "p.png"), ncols=2)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["a / a", "b / c", "c / c"]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG" and os.listdir(tmp_path) == ["p.png"]


def test_run_log_off_rank_0_writes_nothing(tmp_path):
    from paddle_vits.train import RunLog

    out = tmp_path / "run"
    log = RunLog(str(out), writer=False, header={"config": {}}, visualdl=True)
    log.prepare(overwrite=True)
    log.say("hello")
    log.add_step({"step": 1, "epoch": 0, "loss": 1.0, "lr": 0.1})
    log.add_epoch({"epoch": 0, "step": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5})
    layer = paddle.nn.Linear(2, 2)
    log.save(layer.state_dict(), "w.pdparams")
    log.write_text("config.json", "{}")
    log.write_reports()
    log.close()
    assert not out.exists() and len(log.data["steps"]) == 1  # kept in memory, never written
