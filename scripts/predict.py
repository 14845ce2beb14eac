"""Predict classes of images with an exported model (Paddle Inference or onnxruntime).

    python scripts/export_model.py --model cait_xxs_24 --weights pretrained --out export/cait_xxs_24 --onnx
    python scripts/predict.py --model-dir export/cait_xxs_24 --image a.jpg photos/ --topk 5 \\
        --labels imagenet_classes.txt --out predictions.json
    python scripts/predict.py --model-dir export/cait_xxs_24 --image list.txt --backend onnxruntime --out p.csv

``--image`` takes image files, folders (their images, sorted) and ``.txt`` lists (one path a line).
The images are preprocessed as recorded at export time (``MODEL_DIR/preprocess.json``: resize,
center crop, interpolation, mean/std) and run in batches (``--batch-size``) with a progress bar.
Paddle Inference runs on the CPU with oneDNN (``--no-mkldnn`` to disable) and ``--threads``, or on
the GPU (``--device gpu``; ``--trt-fp16`` for TensorRT FP16 when the build has it). ``--out``
writes the predictions as JSON (a list of ``{image, topk: [{class, label, prob}]}``) or CSV
(``image,rank,class,label,prob``), chosen by the extension. An unreadable image stops with an
error naming it (``--skip-bad`` reports it and goes on).
"""
import argparse
import csv
import io
import json
import os
import sys

from paddle_vits.utils.argtypes import int_at_least
from paddle_vits.utils.cli import UserError, add_common_args, run

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".gif")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="an export folder (scripts/export_model.py --out)")
    p.add_argument("--image", nargs="+", required=True, help="image files, folders, or .txt lists of paths")
    p.add_argument("--topk", type=int_at_least(1), default=5, help="classes to report per image")
    p.add_argument("--labels", default=None, help="text file with one class name a line (default: class indices)")
    p.add_argument("--backend", choices=("paddle-inference", "onnxruntime"), default="paddle-inference")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--threads", type=int_at_least(1), default=None, help="CPU threads (default: all cores)")
    p.add_argument("--no-mkldnn", action="store_true", help="Paddle Inference on the CPU without oneDNN")
    p.add_argument("--trt-fp16", action="store_true", help="TensorRT FP16 (GPU builds with TensorRT)")
    p.add_argument("--batch-size", type=int_at_least(1), default=8)
    p.add_argument("--out", default=None, help="write predictions to this .json or .csv file")
    p.add_argument("--skip-bad", action="store_true", help="report unreadable images and go on")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_args(p)
    return p.parse_args(argv)


def collect_images(items):
    """Image paths from files, folders (sorted, not recursive) and ``.txt`` lists, in the given order."""
    paths = []
    for item in items:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, n) for n in os.listdir(item) if n.lower().endswith(IMAGE_EXTS))
            if not found:
                raise UserError(f"folder {item!r} holds no images ({', '.join(IMAGE_EXTS)})", "give image files")
            paths += found
        elif item.lower().endswith(".txt") and os.path.isfile(item):
            with open(item, encoding="utf-8") as f:
                base = os.path.dirname(item)
                paths += [ln if os.path.isabs(ln) else os.path.join(base, ln)
                          for ln in (line.strip() for line in f) if ln and not ln.startswith("#")]
        elif os.path.exists(item):
            paths.append(item)
        else:
            raise UserError(f"--image {item!r} does not exist", "give image files, folders or .txt lists")
    return paths


def read_labels(path, num_classes):
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            labels = [line.rstrip("\n") for line in f if line.strip()]
    except OSError as e:
        raise UserError(f"cannot read --labels {path!r}: {e.strerror}", "give a text file, one class a line") \
            from None
    if num_classes and len(labels) != num_classes:
        raise UserError(f"--labels {path!r} has {len(labels)} names but the model has {num_classes} classes",
                        "give the label file of the model's classes")
    return labels


def to_csv(rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "rank", "class", "label", "prob"])
    for row in rows:
        for rank, p in enumerate(row["topk"], 1):
            w.writerow([row["image"], rank, p["class"], p["label"], f"{p['prob']:.6f}"])
    return buf.getvalue()


def main(argv=None):
    args = parse_args(argv)
    if args.out and not args.out.lower().endswith((".json", ".csv")):
        raise UserError(f"--out {args.out!r} must end in .json or .csv", "e.g. --out predictions.json")
    import numpy as np
    from tqdm import tqdm

    from paddle_vits.data.transforms import BadImageError
    from paddle_vits.inference import Predictor, topk
    from paddle_vits.utils import set_num_threads
    from paddle_vits.utils.io import atomic_write_text

    set_num_threads(args.threads)
    paths = collect_images(args.image)
    predictor = Predictor(args.model_dir, backend=args.backend, device=args.device, threads=args.threads,
                          mkldnn=not args.no_mkldnn, trt_fp16=args.trt_fp16)
    labels = read_labels(args.labels, predictor.preprocess.get("num_classes"))
    rows, bad = [], []
    bar = tqdm(total=len(paths), desc="predict", unit="img", disable=args.no_progress, dynamic_ncols=True,
               file=sys.stderr)
    for start in range(0, len(paths), args.batch_size):
        chunk, arrays = [], []
        for path in paths[start:start + args.batch_size]:
            try:
                arrays.append(predictor.load(path))
                chunk.append(path)
            except BadImageError as e:
                if not args.skip_bad:
                    raise UserError(str(e), "remove the file or pass --skip-bad") from None
                bad.append(path)
                print(f"skipped: {e}", file=sys.stderr)
        if arrays:
            idx, prob = topk(predictor(np.stack(arrays)), args.topk)
            for path, i_row, p_row in zip(chunk, idx, prob):
                rows.append(dict(image=path, topk=[dict(**{"class": int(i)}, label=labels[i] if labels else str(i),
                                                       prob=float(p)) for i, p in zip(i_row, p_row)]))
        bar.update(len(paths[start:start + args.batch_size]))
    bar.close()
    for row in rows:
        best = ", ".join(f"{p['label']} {p['prob']:.3f}" for p in row["topk"])
        print(f"{row['image']}: {best}")
    if args.out:
        text = to_csv(rows) if args.out.lower().endswith(".csv") else json.dumps(rows, indent=1) + "\n"
        atomic_write_text(args.out, text)
        print(f"wrote {len(rows)} predictions to {args.out}" + (f" ({len(bad)} unreadable skipped)" if bad else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
