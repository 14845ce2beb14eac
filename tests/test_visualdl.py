"""The ``visualdl`` extra: training writes VisualDL scalars that VisualDL reads back."""
import os

import pytest

from paddle_vits.train import TrainConfig, train


def test_training_writes_visualdl_scalars(tmp_path, cifar_tar):
    visualdl = pytest.importorskip("visualdl", reason="the visualdl extra is not installed")
    cfg = TrainConfig(model="cait_xxs_24", model_kwargs=dict(depth=2), data=cifar_tar, output=str(tmp_path),
                      img_size=32, batch_size=20, epochs=1, lr=1e-3, workers=0, progress=False, visualdl=True)
    train(cfg)
    logdir = tmp_path / "visualdl"
    files = [f for f in os.listdir(logdir) if f.startswith("vdlrecords")]
    assert len(files) == 1, os.listdir(logdir)
    reader = visualdl.LogReader(file_path=str(logdir / files[0]))
    losses = reader.get_data("scalar", "train/loss")
    assert len(losses) == 10 and all(r.value > 0 for r in losses)  # 200 images / batch 20
    steps = [r.id for r in losses]
    assert steps == sorted(steps) and len(set(steps)) == 10
