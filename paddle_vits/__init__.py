"""paddle_vits: CaiT, CrossViT, Wave-ViT and CrossFormer in PaddlePaddle.

Every model follows one contract (``docs/model_contract.md``): ``num_classes``,
``num_features``, ``forward_features``, ``forward_head(x, pre_logits=False)``,
``get_classifier``, ``reset_classifier(n)``, ``no_weight_decay``, one input
check, and its own ``checkpoint_filter`` for official weights. Build models
with :func:`create_model` (``paddle_vits.factory``); :mod:`paddle_vits.registry`
holds their metadata only.
"""
import warnings
import zlib  # noqa: F401  (before paddle: see paddle_vits.utils.compat, "zlib")

# Paddle 3.3 warns about a missing ccache (a C++-extension build cache) on every import.
warnings.filterwarnings("ignore", message="No ccache found")

from .utils.cpu import copy_views_eagerly, keep_freed_memory, use_fast_mkl_path

use_fast_mkl_path()  # before the first matrix product: MKL's AVX2 kernels on AMD CPUs (paddle_vits.utils.cpu)
keep_freed_memory()  # malloc reuses freed tensors instead of faulting fresh pages in per op (same module)

from .utils.compat import check_paddle_version  # noqa: E402

check_paddle_version()  # before anything else: a clear message instead of a failure deep in a model
copy_views_eagerly()  # no strided views on CPU builds: their copies are slow there (same module)

from . import models  # noqa: E402,F401  (registers the variants)
from .factory import create_model  # noqa: E402
from .registry import get_model_info, is_model, list_models, register_model  # noqa: E402

__version__ = "0.1.0"

__all__ = ["create_model", "get_model_info", "is_model", "list_models", "register_model", "__version__"]
