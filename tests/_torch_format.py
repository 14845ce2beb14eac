"""Values of the tensors in ``tests/fixtures/torch_*.pth`` (see ``make_torch_format_fixtures.py``)."""
import numpy as np


def expected_arrays():
    """Name (without ``module.``) -> the array the reader must return."""
    rows = (np.arange(20, dtype=np.float32) / 7.0 - 1.0).reshape(5, 4)
    return {
        "linear.weight": (np.arange(12, dtype=np.float32) / 3.0).reshape(3, 4),
        "proj.weight": (np.arange(6, dtype=np.float32) - 2.5).reshape(2, 3),
        "rows": rows,
        "shared_a": rows[1:3],
        "shared_b": rows,
        "haar": np.array([[0.5, 0.5], [-0.5, 0.5]], dtype=np.float16),
        "bf16": np.array([1.0, -2.5, 0.375, 3.0], dtype=np.float32),  # exact in bfloat16
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
    }
