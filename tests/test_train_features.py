"""Training features: accumulation, EMA, fine-tuning (head, freeze, layer decay), recipe files, evaluation."""
import json
import os

import numpy as np
import paddle
import pytest

import paddle_vits
from paddle_vits.train import TrainConfig, TrainingError, train
from paddle_vits.train.config import FIELDS, config_from_argv, config_to_yaml, read_config_file
from paddle_vits.train.ema import ModelEma
from paddle_vits.train.finetune import enable_recompute, layer_decay_scales, layer_ids
from test_train_data import make_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(depth=2)
HAS_GPU = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def _cfg(data, out, **kw):
    args = dict(model="cait_xxs_24", model_kwargs=TINY, data=data, output=str(out), img_size=32, batch_size=20,
                epochs=1, lr=1e-3, workers=0, progress=False, visualdl=False)
    args.update(kw)
    return TrainConfig(**args)


def _params(path):
    return {k: np.asarray(v) for k, v in paddle.load(str(path)).items()}


def _tiny(num_classes=10, seed=0):
    paddle.seed(seed)  # train() builds its model after paddle.seed(cfg.seed)
    return paddle_vits.create_model("cait_xxs_24", num_classes=num_classes, img_size=32, **TINY)


def test_accumulation_equals_the_large_batch(cifar_tar, tmp_path):
    big = train(_cfg(cifar_tar, tmp_path / "big", batch_size=20, max_steps=4))
    acc = train(_cfg(cifar_tar, tmp_path / "acc", batch_size=5, accum_steps=4, max_steps=4))
    assert big["step"] == acc["step"] == 4
    a, b = _params(tmp_path / "big" / "final.pdparams"), _params(tmp_path / "acc" / "final.pdparams")
    start = {k: v.numpy() for k, v in _tiny(seed=42).state_dict().items()}
    moved = 0
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=2e-6, err_msg=k)
        moved += not np.allclose(a[k], start[k])
    assert moved > len(a) // 2  # the runs did train
    log = json.load(open(tmp_path / "acc" / "log.json"))
    assert log["steps_per_epoch"] == 10  # 200 images / (5 x 4)


def test_ema_is_the_hand_computed_average():
    model, shadow = _tiny(), _tiny()
    ema = ModelEma(model, shadow, decay=0.75)
    expected = {k: v.numpy().astype(np.float32) for k, v in model.state_dict().items()}
    rng = np.random.default_rng(0)
    for _ in range(3):
        for name, p in model.named_parameters():
            p.set_value(rng.normal(size=p.shape).astype(np.float32))
            expected[name] = np.float32(0.75) * expected[name] + np.float32(0.25) * p.numpy()
        ema.update(model)
    got = ema.state_dict()
    for k, v in expected.items():
        np.testing.assert_allclose(got[k].numpy(), v, rtol=1e-6, atol=1e-7, err_msg=k)


def test_ema_and_accumulation_resume_bit_exactly(cifar_tar, tmp_path):
    opts = dict(epochs=2, batch_size=10, accum_steps=2, model_ema=True, model_ema_decay=0.9, mixup=0.8,
                drop_path=0.1)
    full = train(_cfg(cifar_tar, tmp_path / "full", **opts))
    train(_cfg(cifar_tar, tmp_path / "parts", max_steps=7, **opts))
    resumed = train(TrainConfig(resume=str(tmp_path / "parts"), workers=0, progress=False, visualdl=False))
    assert full["step"] == resumed["step"] == 20
    for name in ("final.pdparams", "final_ema.pdparams"):
        a, b = _params(tmp_path / "full" / name), _params(tmp_path / "parts" / name)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name} {k}")
    ema, raw = _params(tmp_path / "full" / "final_ema.pdparams"), _params(tmp_path / "full" / "final.pdparams")
    assert any(not np.array_equal(ema[k], raw[k]) for k in raw)
    assert full["final"]["val_acc_ema"] == resumed["final"]["val_acc_ema"]
    assert (tmp_path / "full" / "best_ema.pdparams").is_file()


def test_finetune_on_two_separable_classes_learns(tmp_path):
    """Fine-tune a 10-class model on red vs blue squares (image folder): new 2-class head, high accuracy."""
    data = make_folder(tmp_path / "ds", n_train=40, n_val=10)
    pretrained = tmp_path / "pre.pdparams"
    paddle.save(_tiny(10).state_dict(), str(pretrained))
    res = train(_cfg(data, tmp_path / "run", pretrained=str(pretrained), epochs=3, batch_size=16,
                     lr=5e-4, aug="imagenet", randaug_n=0, reprob=0.0, model_ema=True, model_ema_decay=0.5))
    assert res["model"].num_classes == 2
    log = json.load(open(tmp_path / "run" / "log.json"))
    assert res["final"]["val_acc"] >= 0.9, log["epochs"]
    assert log["epochs"][-1]["val_top5"] == 1.0  # 2 classes: top-5 is every class
    assert (tmp_path / "run" / "classes.txt").read_text() == "blue\nred\n"
    per_class = (tmp_path / "run" / "per_class.csv").read_text().splitlines()
    assert per_class[0] == "class,images,correct,accuracy" and per_class[1].startswith("blue,10,")
    confusion = json.load(open(tmp_path / "run" / "confusion.json"))
    assert np.asarray(confusion["matrix"]).sum() == 20 and confusion["classes"] == ["blue", "red"]
    assert np.trace(confusion["matrix"]) == round(20 * res["final"]["val_acc"])
    assert (tmp_path / "run" / "confusion.png").is_file() and (tmp_path / "run" / "confusion_ema.png").is_file()

    # --eval-only on the checkpoint reproduces the final evaluation.
    ev = train(TrainConfig(resume=str(tmp_path / "run"), eval_only=True, workers=0, progress=False,
                           visualdl=False))
    assert ev["final"]["val_acc"] == res["final"]["val_acc"]
    assert ev["final"]["val_acc_ema"] == res["final"]["val_acc_ema"]
    assert json.load(open(tmp_path / "run" / "eval.json"))["step"] == res["step"]


def test_freeze_trains_only_the_head(cifar_tar, tmp_path):
    res = train(_cfg(cifar_tar, tmp_path / "run", freeze=True, max_steps=2))
    start, end = _tiny(seed=42).state_dict(), res["model"].state_dict()
    head = {"head.weight", "head.bias"}
    for k in start:
        same = np.array_equal(start[k].numpy(), end[k].numpy())
        assert same != (k in head), k


def test_layer_decay_scales_by_depth():
    model = _tiny()
    ids, num_blocks = layer_ids(model)
    assert num_blocks == 4  # cait: 2 self-attention blocks + 2 class-attention blocks
    assert ids["patch_embed.proj.weight"] == ids["pos_embed"] == 0
    assert ids["blocks.0.attn.qkv.weight"] == 1 and ids["blocks.1.norm1.weight"] == 2
    assert ids["blocks_token_only.1.norm1.weight"] == 4 and ids["head.weight"] == ids["norm.weight"] == 5
    scales = layer_decay_scales(model, 0.5)
    assert scales["head.weight"] == 1.0 and scales["blocks.0.attn.qkv.weight"] == 0.5 ** 4
    assert scales["cls_token"] == 0.5 ** 5


def test_layer_ids_of_staged_families():
    cf = paddle_vits.create_model("crossformer_t", num_classes=10, img_size=32, depths=[1, 2, 1, 1], embed_dim=32,
                                  num_heads=[1, 2, 4, 8])
    ids, num_blocks = layer_ids(cf)
    assert num_blocks == 5 and ids["patch_embed.norm.weight"] == 0
    assert ids["layers.1.blocks.0.norm1.weight"] == 2 and ids["layers.1.blocks.1.norm1.weight"] == 3
    assert ids["layers.1.downsample.norm.weight"] == 3  # between stages: the block before it
    assert ids["norm.weight"] == ids["head.weight"] == 6
    cv = paddle_vits.create_model("crossvit_9_240", num_classes=10)
    ids, num_blocks = layer_ids(cv)
    assert num_blocks == 3 and ids["cls_token.1"] == 0 and ids["head.1.weight"] == 4  # one id per multi-scale stage


def test_layer_decay_reaches_the_optimizer(cifar_tar, tmp_path):
    res = train(_cfg(cifar_tar, tmp_path / "run", layer_decay=0.5, max_steps=1, opt="adamw"))
    model = res["model"]
    lr_of = {n: p.optimize_attr["learning_rate"] for n, p in model.named_parameters()}
    assert lr_of["head.weight"] == 1.0 and lr_of["patch_embed.proj.weight"] == 0.5 ** 5


@pytest.mark.parametrize("name, kwargs, size, wrapped", [
    ("cait_xxs_24", TINY, 32, 4),
    ("crossformer_t", dict(depths=[1, 1, 1, 1], embed_dim=32, num_heads=[1, 2, 4, 8]), 32, 4),
    ("wavevit_s", dict(depths=[1, 1, 1, 1], embed_dims=[32, 64, 64, 64], num_heads=[1, 2, 2, 2],
                       stem_hidden_dim=16), 32, 5),
    ("crossvit_tiny_240", {}, 240, 3),  # multi-scale blocks take and return lists of tensors
])
def test_recompute_gives_the_same_gradients(name, kwargs, size, wrapped):
    x = paddle.to_tensor(np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32))
    grads = []
    for recompute in (False, True):
        paddle.seed(0)
        model = paddle_vits.create_model(name, num_classes=10, img_size=size, **kwargs)
        if recompute:
            assert enable_recompute(model) == wrapped
        model(x).sum().backward()
        grads.append({n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0.8 * len(list(model.parameters()))
    for k in grads[0]:
        np.testing.assert_allclose(grads[0][k], grads[1][k], rtol=1e-5, atol=1e-5, err_msg=k)


def test_recompute_and_amp_o2_on_cpu_say_they_are_ignored(cifar_tar, tmp_path, capsys):
    train(_cfg(cifar_tar, tmp_path / "run", recompute=True, amp="float16", amp_level="O2", max_steps=1))
    out = capsys.readouterr().out
    assert "--recompute ignored on CPU" in out and "--amp-level O2 ignored on CPU" in out


@pytest.mark.skipif(not HAS_GPU, reason="AMP O2 and recompute need a GPU (Paddle has none here)")
@pytest.mark.parametrize("amp", ["float16", "bfloat16"])
def test_amp_o2_and_recompute_on_gpu(cifar_tar, tmp_path, amp):
    res = train(_cfg(cifar_tar, tmp_path / "run", amp=amp, amp_level="O2", recompute=True, accum_steps=2,
                     batch_size=10, max_steps=3, device="gpu", model_ema=True))
    assert np.isfinite(res["final"]["val_loss"]) and res["step"] == 3
    ckpt = paddle_vits.train.load_checkpoint(str(tmp_path / "run"))
    assert "master_weights" in ckpt["optimizer"]


def test_config_round_trip_and_overrides(tmp_path):
    cfg = TrainConfig(model="crossvit_9_240", epochs=3, lr=3e-4, model_kwargs={"depth": [[1, 1, 0]]},
                      model_ema=True, accum_steps=4, amp="bfloat16")
    path = tmp_path / "r.yaml"
    path.write_text(config_to_yaml(cfg))
    assert TrainConfig(**read_config_file(path)) == TrainConfig(**{**cfg.__dict__, "resume": None})
    path.write_text("model: wavevit_s\nlr: 3e-4\nepochs: 5\nbatch-size: 64\n")  # 3e-4 is a string to YAML 1.1
    cli = config_from_argv(["--config", str(path), "--epochs", "7"])
    assert (cli.model, cli.lr, cli.epochs, cli.batch_size) == ("wavevit_s", 3e-4, 7, 64)
    assert {"model", "lr", "epochs", "batch_size"} <= cli._given


@pytest.mark.parametrize("text, msg", [
    ("batchsize: 8\n", r"unknown option .batchsize.*did you mean batch_size\?"),
    ("model_emma: true\n", r"unknown option 'model_emma'.*did you mean model_ema\?"),
    ("epochs: many\n", r"epochs must be an integer, got 'many'"),
    ("- a\n- b\n", r"holds a list, not a mapping"),
    ("a: [\n", r"not valid YAML"),
])
def test_bad_config_files(tmp_path, text, msg):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(TrainingError, match=msg):
        read_config_file(path)


def test_every_shipped_recipe_loads_and_resolves():
    from paddle_vits.train import resolve_config

    files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(REPO, "configs")) for f in fs
             if f.endswith(".yaml")]
    assert len(files) >= 6
    for f in files:
        cfg = resolve_config(TrainConfig(**read_config_file(f)))
        assert paddle_vits.is_model(cfg.model), f


def test_run_records_its_resolved_config(cifar_tar, tmp_path):
    train(_cfg(cifar_tar, tmp_path / "run", max_steps=1))
    recorded = read_config_file(tmp_path / "run" / "config.yaml")
    assert recorded["model"] == "cait_xxs_24" and recorded["epochs"] == 1 and recorded["aug"] == "notebook"
    assert set(recorded) == set(FIELDS) - {"resume", "overwrite", "eval_only"}


def test_eval_only_needs_a_run(cifar_tar, tmp_path):
    with pytest.raises(TrainingError, match="--eval-only evaluates a run's checkpoint"):
        train(_cfg(cifar_tar, tmp_path / "run", eval_only=True))


def test_pretrained_by_model_name_takes_its_default_release(cifar_tar, tmp_path, monkeypatch, capsys):
    """A model name given to --pretrained resolves through the hub to that model's default release (the hub's
    download itself is tested in test_hub.py; here it hands back a local file)."""
    from paddle_vits import hub

    path = tmp_path / "release.pdparams"
    paddle.save(_tiny(1000).state_dict(), str(path))
    calls = []

    def resolve(name, tag=None, **kw):
        calls.append((name, tag))
        return str(path)

    monkeypatch.setattr(hub, "resolve_pretrained", resolve)
    res = train(_cfg(cifar_tar, tmp_path / "run", pretrained="cait_xxs_24", max_steps=1))
    assert calls == [("cait_xxs_24", None)] and res["model"].num_classes == 10
    out = capsys.readouterr().out
    assert "loaded cait_xxs_24; re-initialised head." in out
    with pytest.raises(TrainingError, match="--pretrained wavevit_s is a wavevit model"):
        train(_cfg(cifar_tar, tmp_path / "run2", pretrained="wavevit_s"))


def _script_main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_script", os.path.join(REPO, "scripts", "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_script_with_a_recipe_file_then_eval_only(cifar_tar, tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(f"model: cait_xxs_24\nmodel_kwargs: {{depth: 2}}\ndata: {cifar_tar}\nimg_size: 32\n"
                      "batch_size: 10\nepochs: 1\nlr: 1e-3\nworkers: 0\nmodel_ema: true\nprogress: false\n"
                      "visualdl: false\n")
    main = _script_main()
    out = tmp_path / "run"
    res = main(["--config", str(recipe), "--output", str(out), "--max-steps", "3", "--accum-steps", "2"])
    assert res["step"] == 3
    recorded = read_config_file(out / "config.yaml")
    assert recorded["accum_steps"] == 2 and recorded["model_kwargs"] == {"depth": 2} and recorded["lr"] == 1e-3
    ev = main(["--resume", str(out), "--eval-only"])
    assert ev["final"]["val_acc"] == res["final"]["val_acc"] and "val_top5_ema" in ev["final"]
    assert "top-5" in capsys.readouterr().out


def test_script_reports_a_bad_recipe_in_one_line(tmp_path):
    import subprocess
    import sys

    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model: cait_xxs_24\nmodel_emaa: true\n")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "train.py"), "--config", str(recipe)],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown option 'model_emaa' (did you mean model_ema?" in lines[0], r.stderr
    assert os.listdir(tmp_path) == ["bad.yaml"]
