"""paddle_vits: CaiT, CrossViT, Wave-ViT and CrossFormer in PaddlePaddle."""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _version():
    with open(os.path.join(HERE, "paddle_vits", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip('"')
    raise RuntimeError("no __version__")


with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    long_description = f.read()

# Paddle itself is not in install_requires: the CPU build (`paddlepaddle`) and
# the GPU build (`paddlepaddle-gpu`) are different distributions that must not
# be installed together. CPU users take the `cpu` extra; GPU users install
# paddlepaddle-gpu first (see README) and skip it.
EXPLAIN = ["lime>=0.2.0.1", "scikit-image>=0.22"]  # LIME explanations; skimage's sample images in notebooks
# ONNX export and its check. paddle2onnx 2.x has wheels for Python 3.8-3.12 only (on 3.13 pip would fall
# back to the unrelated 0.9 sdist): the extra leaves it out there and the export tests skip with the reason.
EXPORT = ['paddle2onnx>=2.0; python_version < "3.13"', "onnxruntime>=1.16"]
EXTRAS = {
    # 2.6.2 is the oldest supported (paddle_vits/utils/compat.py); it has wheels up to Python 3.12.
    "cpu": ["paddlepaddle>=2.6.2,<3.4"],
    "drive": ["gdown>=5"],  # Google Drive weights (Wave-ViT, CrossFormer); a built-in fallback works without it
    "explain": EXPLAIN,
    "export": EXPORT,
    "visualdl": ["visualdl>=2.5"],  # training logs (2.5.3 measured with numpy 2.4 on Python 3.11)
    "test": ["pytest>=7", "pytest-xdist>=3.5", "nbclient>=0.9", "nbformat>=5.9", "ipykernel>=6.20"] + EXPLAIN + EXPORT,
}

setup(
    name="paddle_vits",
    version=_version(),
    description="CaiT, CrossViT, Wave-ViT and CrossFormer in PaddlePaddle, matching the official PyTorch models",
    long_description=long_description,
    long_description_content_type="text/markdown",
    packages=find_packages(include=["paddle_vits", "paddle_vits.*"]),
    python_requires=">=3.9",
    install_requires=[
        "numpy>=1.23",
        "PyWavelets>=1.4",
        "matplotlib>=3.6",
        "pillow>=9",
        "tqdm>=4.60",
        "safetensors>=0.4",
        "PyYAML>=5.1",  # training recipe files (configs/, --config)
    ],
    extras_require=EXTRAS,
    license="Apache-2.0",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
