"""The tutorial notebooks run end to end (real kernel, small overrides) and are committed clean.

Each notebook has one code cell tagged ``parameters`` (papermill convention)
whose defaults are the real recipe. The test injects a cell right after it
with small overrides (synthetic data written in the real formats, a few
steps, a small image size), executes every cell with ``nbclient`` and fails on
the first cell that raises.
"""
import os

import numpy as np
import pytest
from _cifar_synth import write_cifar_tar

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NB_DIR = os.path.join(ROOT, "notebooks")
NOTEBOOKS = sorted(f for f in os.listdir(NB_DIR) if f.endswith(".ipynb")) if os.path.isdir(NB_DIR) else []
EXPECTED = {"crossvit_cifar10.ipynb", "cait_imagenet_eval.ipynb", "wavevit_cifar10.ipynb", "crossformer.ipynb"}


def _parameters_index(nb):
    idx = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(idx) == 1, f"expected exactly one cell tagged 'parameters', found {len(idx)}"
    assert nb.cells[idx[0]].cell_type == "code"
    return idx[0]


def run_notebook(path, overrides, cwd, timeout=900):
    """Execute ``path`` with ``overrides`` injected after its parameters cell; return the executed notebook."""
    nb = nbformat.read(path, as_version=4)
    idx = _parameters_index(nb)
    source = "# injected by tests/test_notebooks.py\n" + "\n".join(f"{k} = {v!r}" for k, v in overrides.items())
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(idx + 1, cell)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def test_all_notebooks_present():
    assert EXPECTED <= set(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_clean(name):
    """Committed without outputs; one parameters cell; no model code: models come from paddle_vits."""
    nb = nbformat.read(os.path.join(NB_DIR, name), as_version=4)
    nbformat.validate(nb)
    _parameters_index(nb)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "import paddle_vits" in code
    assert "(nn.Layer)" not in code and "(paddle.nn.Layer)" not in code
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{name}: commit the notebook without outputs"


def write_imagenet_val(root, n=6, seed=0):
    """``n`` real JPEG files and a ``val_list.txt`` of ``file label`` lines (the tutorial's layout)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    lines = []
    for i in range(n):
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        size = (int(rng.integers(60, 120)), int(rng.integers(60, 120)), 3)
        Image.fromarray(rng.integers(0, 256, size=size, dtype=np.uint8)).save(os.path.join(root, name), "JPEG")
        lines.append(f"{name} {int(rng.integers(0, 1000))}")
    val_list = os.path.join(root, "val_list.txt")
    with open(val_list, "w") as f:
        f.write("\n".join(lines) + "\n")
    return root, val_list


def write_official_checkpoint(model, path):
    """The model's random weights in the official PyTorch layout (``nn.Linear`` weights ``[out, in]``),
    as a safetensors file, i.e. what ``convert_checkpoint`` reads from an official release."""
    import paddle.nn as nn
    from safetensors.numpy import save_file

    linear = {f"{name}.weight" for name, layer in model.named_sublayers() if isinstance(layer, nn.Linear)}
    state = {k: np.ascontiguousarray(v.numpy().T if k in linear else v.numpy()) for k, v in model.state_dict().items()}
    save_file(state, path)
    return path


def _cait_overrides(tmp_path):
    import paddle_vits

    name = "cait_xxs_24"
    kwargs = dict(paddle_vits.get_model_info(name).test_kwargs)
    model = paddle_vits.create_model(name, **kwargs)
    weights = write_official_checkpoint(model, str(tmp_path / "official.safetensors"))
    data_dir, val_list = write_imagenet_val(str(tmp_path / "val"))
    return dict(MODEL=name, MODEL_KWARGS=kwargs, WEIGHTS=weights, CONVERTED=str(tmp_path / "converted.pdparams"),
                DATA_DIR=data_dir, VAL_LIST=val_list, BATCH_SIZE=4, NUM_WORKERS=0)


def _overrides(name, tmp_path):
    """Small settings for each notebook (the recipe defaults stay in the notebook).

    The synthetic CIFAR-10 archive has 40 training images (5 steps of 8 per epoch) and 20 test images,
    so two full epochs run: the curves, the best checkpoint and the prediction grid are the real thing.
    """
    if name == "cait_imagenet_eval.ipynb":
        return _cait_overrides(tmp_path)
    cifar = dict(DATA_PATH=write_cifar_tar(str(tmp_path / "cifar-10-python.tar.gz"), per_batch=8, test=20),
                 OUTPUT_DIR=str(tmp_path / "out"), EPOCHS=2, BATCH_SIZE=8, NUM_WORKERS=0, THROUGHPUT_BATCHES=1)
    if name == "crossvit_cifar10.ipynb":
        return dict(cifar, IMG_SIZE=120)  # branches 120 / 112, the smallest that fit patches 12 and 16
    if name == "wavevit_cifar10.ipynb":
        return dict(cifar, IMG_SIZE=32, LIME_SAMPLES=8)
    if name == "crossformer.ipynb":
        return dict(cifar, IMG_SIZE=64)  # at 32 the last stage is one token: nothing to show in section 6
    raise KeyError(f"no test overrides for {name}: add them to tests/test_notebooks.py")


def _assert_figures_shown(nb, name):
    """Every cell that calls ``plt.show()`` put a PNG in its outputs (the inline backend stayed active)."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "plt.show()" in cell.source:
            kinds = {k for out in cell.outputs for k in out.get("data", {})}
            assert "image/png" in kinds, f"{name}: cell {i} drew no figure (outputs: {sorted(kinds)})"


SLOW = {"crossvit_cifar10.ipynb", "wavevit_cifar10.ipynb", "crossformer.ipynb"}  # 20-40 s each on 2 CPU cores


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NOTEBOOKS])
def test_notebook_runs(name, tmp_path):
    nb = run_notebook(os.path.join(NB_DIR, name), _overrides(name, tmp_path), cwd=tmp_path)
    _assert_figures_shown(nb, name)
    if name != "cait_imagenet_eval.ipynb":
        out = tmp_path / "out"
        assert (out / "best.pdparams").is_file() and (out / "log.json").is_file()
