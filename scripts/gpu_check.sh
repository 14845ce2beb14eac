#!/usr/bin/env bash
# GPU check, one model per family, under 10 minutes on one modern GPU (not run yet: no GPU was available
# when it was written; see docs/performance.md):
#   1. AMP (float16 O1) logits against fp32 on the same weights and input: max |diff| and top-1 agreement;
#   2. inference throughput at batch 64 and 256, AMP training steps at batch 64, peak GPU memory
#      (scripts/benchmark.py --device gpu --amp).
# Usage: bash scripts/gpu_check.sh [MODEL ...]   (run from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=(cait_xxs_24 crossvit_9_dagger_224 wavevit_s crossformer_t)

python - "${MODELS[@]}" <<'PY'
import sys
import numpy as np
import paddle
from paddle_vits import create_model, get_model_info

paddle.set_device("gpu")
for name in sys.argv[1:]:
    size = get_model_info(name).img_size
    paddle.seed(0)
    model = create_model(name)
    model.eval()
    x = paddle.randn([8, 3, size, size])
    with paddle.no_grad():
        ref = model(x).numpy()
        with paddle.amp.auto_cast(level="O1", dtype="float16"):
            amp = model(x).astype("float32").numpy()
    diff = float(np.abs(amp - ref).max())
    top1 = float((amp.argmax(1) == ref.argmax(1)).mean())
    scale = float(np.abs(ref).max())
    ok = diff <= 2e-2 * max(scale, 1.0)
    print(f"amp-check {name}: max |amp - fp32| {diff:.3e} (|logits| up to {scale:.2f}), top-1 agreement "
          f"{top1:.2f} -> {'ok' if ok else 'FAIL'}", flush=True)
    if not ok:
        sys.exit(1)
PY

for m in "${MODELS[@]}"; do
  python scripts/benchmark.py --model "$m" --device gpu --amp --batch-size 256 --steps 10 --warmup 3 --no-train
  python scripts/benchmark.py --model "$m" --device gpu --amp --batch-size 64 --steps 10 --warmup 3
done
