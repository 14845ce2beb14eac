"""CIFAR-10 training loop: one code path for CPU, one GPU and many (``paddle.distributed.launch``).

Determinism/resume: the initial weights come from ``seed``; the data order of epoch ``e`` is a permutation drawn from
``(seed, e)``; each sample's augmentation from ``(seed, e, index)``; Mixup from
``(seed, step, rank)``; Paddle's RNG (dropout, drop-path) is re-seeded from
``(seed, step, rank)`` before every step. A run resumed from a checkpoint at
step ``k`` therefore computes exactly the steps an uninterrupted run would.
"""
import dataclasses
import difflib
import json
import math
import os
import random
import sys
import time

import numpy as np
import paddle
import paddle.distributed as dist

from .. import registry
from ..data.cifar import CIFAR10, find_or_download_cifar10, read_cifar10
from ..data.mixup import Mixup, one_hot
from ..data.train_transforms import eval_transform, train_transform
from ..utils import atomic_save, set_num_threads
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, load_optimizer_state, restore_rng_state, save_checkpoint
from .loss import soft_target_cross_entropy
from .optim import build_optimizer, build_scheduler
from .report import atomic_text, plot_curves, plot_predictions, write_logs


class TrainingError(RuntimeError):
    """A run that cannot start or continue (bad option, NaN loss, unwritable output)."""


# The notebooks' recipes; other families use the Wave-ViT one. CrossViT is fed its native
# 240 px (the notebook fed 224 px, which the model resized to 240 internally).
RECIPES = {
    "crossvit": dict(batch_size=256, lr=3e-4, epochs=100, img_size=240),
    "wavevit": dict(batch_size=128, lr=1e-4, epochs=50, img_size=224),
}
DEFAULT_RECIPE = dict(batch_size=128, lr=1e-4, epochs=50, img_size=224)


@dataclasses.dataclass
class TrainConfig:
    """Options of :func:`train` (``None`` = the model's recipe default, see ``RECIPES``)."""

    model: str = "wavevit_s"
    data: str = None
    output: str = None
    epochs: int = None
    batch_size: int = None
    lr: float = None
    min_lr: float = 0.0
    opt: str = "adam"
    warmup_epochs: float = 0.0
    weight_decay: float = 1e-5
    smoothing: float = 0.1
    img_size: int = None
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    clip_grad: float = None
    drop_path: float = 0.0
    amp: str = None
    workers: int = 2
    seed: int = 42
    max_steps: int = None
    save_every: int = 0
    pretrained: str = None
    model_kwargs: dict = None
    resume: str = None
    threads: int = None
    val_batch_size: int = None
    progress: bool = True
    visualdl: bool = True


def recipe_for(model_name):
    """The notebook recipe (``batch_size``, ``lr``, ``epochs``, ``img_size``) for a model or alias."""
    name = registry.resolve_name(model_name)
    for prefix, recipe in RECIPES.items():
        if name.startswith(prefix):
            return dict(recipe)
    return dict(DEFAULT_RECIPE)


def resolve_config(cfg):
    """Fill ``None`` fields from the model's recipe and check the options."""
    if not registry.is_model(cfg.model):
        close = difflib.get_close_matches(cfg.model, registry.list_models(include_aliases=True), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise TrainingError(f"unknown model {cfg.model!r}.{hint} See `python scripts/list_models.py`.")
    cfg = dataclasses.replace(cfg, model=registry.resolve_name(cfg.model))
    for k, v in recipe_for(cfg.model).items():
        if getattr(cfg, k) is None:
            setattr(cfg, k, v)
    if cfg.output is None:
        cfg.output = os.path.join("output", f"cifar10_{cfg.model}")
    checks = [(cfg.epochs >= 1, "--epochs must be >= 1"), (cfg.batch_size >= 1, "--batch-size must be >= 1"),
              (cfg.lr > 0, "--lr must be > 0"), (cfg.opt in ("adam", "adamw"), "--opt must be adam or adamw"),
              (0 <= cfg.smoothing < 1, "--smoothing must be in [0, 1)"), (cfg.img_size >= 1, "--img-size must be >= 1"),
              (cfg.amp in (None, "float16", "bfloat16"), "--amp takes float16 or bfloat16"),
              (not (cfg.mixup or cfg.cutmix) or cfg.batch_size % 2 == 0, "--mixup/--cutmix need an even --batch-size")]
    for ok, msg in checks:
        if not ok:
            raise TrainingError(msg)
    if cfg.model_kwargs is not None and not isinstance(cfg.model_kwargs, dict):
        raise TrainingError(f"model_kwargs must be a dict of model arguments, got {cfg.model_kwargs!r}")
    return cfg


def _check_writable(out_dir):
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise TrainingError(f"cannot write to output dir {out_dir!r} ({e.strerror or e}); "
                            "pass a writable --output") from e


class EpochBatchSampler(paddle.io.BatchSampler):
    """Shuffled, sharded batches whose order is a function of ``(seed, epoch)``.

    Each epoch draws one permutation of the dataset, drops the tail that does
    not fill ``batch_size * world_size``, and gives rank ``r`` every
    ``world_size``-th sample (the scheme of ``paddle.io.DistributedBatchSampler``,
    made resumable: :meth:`set_epoch` takes the number of batches to skip).
    """

    def __init__(self, num_samples, batch_size, seed=0, rank=0, world_size=1):
        self.num_samples, self.batch_size = num_samples, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.start = 0, 0
        if len(self) == 0:
            raise TrainingError(f"{num_samples} training images cannot fill one batch of {batch_size} x "
                                f"{world_size} process(es); lower --batch-size")

    def set_epoch(self, epoch, start_batch=0):
        """Use epoch ``epoch``'s permutation and start at its batch ``start_batch`` (to resume)."""
        self.epoch, self.start = int(epoch), int(start_batch)

    def __len__(self):
        return self.num_samples // (self.batch_size * self.world_size)

    def __iter__(self):
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        per_step = self.batch_size * self.world_size
        for b in range(self.start, len(self)):
            chunk = perm[b * per_step:(b + 1) * per_step]
            yield chunk[self.rank::self.world_size].tolist()


def _step_seed(seed, step, rank):
    return (int(seed) * 7919 + int(step) * 104729 + int(rank)) % (2 ** 31)


def load_for_finetune(model, path, model_name):
    """Load ImageNet weights for fine-tuning: classifier re-initialised, position embeddings resized.

    Returns the list of re-initialised classifier keys.
    """
    from ..convert import CheckpointError, load_pretrained

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TrainingError(f"--pretrained {path}: no such file")
    try:
        return load_pretrained(model, path, model_name, reinit_head=True, resize_pos_embed=True)
    except (CheckpointError, ValueError) as e:
        raise TrainingError(f"--pretrained {path}: {e}") from e


class _Run:
    """State of one training run (built by :func:`train`)."""

    def __init__(self, cfg, data):
        self.cfg = cfg
        self.world = dist.get_world_size()
        self.rank = dist.get_rank()
        self.main = self.rank == 0
        self.on_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.get_device().startswith("gpu")
        self.amp = cfg.amp if self.on_gpu else None
        if cfg.amp and not self.on_gpu:
            self.say(f"--amp {cfg.amp} ignored: paddle.amp.auto_cast does nothing on CPU; training in float32.")
        self.classes = data["classes"]
        num_classes = len(self.classes)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        paddle.seed(cfg.seed)  # the model's initial weights (same on every rank)
        try:
            model = registry.create_model(cfg.model, num_classes=num_classes, img_size=cfg.img_size,
                                          drop_path_rate=cfg.drop_path, **(cfg.model_kwargs or {}))
        except TypeError as e:
            if not cfg.model_kwargs:
                raise
            raise TrainingError(f"{cfg.model} does not take the model arguments {cfg.model_kwargs}: {e}") from e
        except ValueError as e:
            raise TrainingError(f"--img-size {cfg.img_size} does not fit {cfg.model}: {e}") from e
        if cfg.pretrained and not cfg.resume:
            skipped = load_for_finetune(model, cfg.pretrained, cfg.model)
            self.say(f"loaded {cfg.pretrained}; re-initialised {', '.join(skipped) or 'nothing'}")
        self.model = model
        self.net = paddle.DataParallel(model) if self.world > 1 else model
        self.train_set = CIFAR10(*data["train"], transform=train_transform(cfg.img_size), seed=cfg.seed,
                                 classes=self.classes)
        self.val_set = CIFAR10(*data["test"], transform=eval_transform(cfg.img_size), classes=self.classes)
        self.sampler = EpochBatchSampler(len(self.train_set), cfg.batch_size, cfg.seed, self.rank, self.world)
        self.steps_per_epoch = len(self.sampler)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.scheduler = build_scheduler(cfg.lr, self.total_steps, int(round(cfg.warmup_epochs * self.steps_per_epoch)),
                                         cfg.min_lr)
        self.optimizer = build_optimizer(model, cfg.opt, self.scheduler, cfg.lr, cfg.weight_decay, cfg.clip_grad)
        self.scaler = paddle.amp.GradScaler() if self.amp == "float16" else None
        self.mixup = (Mixup(cfg.mixup, cfg.cutmix, cfg.mixup_prob, smoothing=cfg.smoothing, num_classes=num_classes,
                            seed=cfg.seed) if (cfg.mixup or cfg.cutmix) else None)
        self.step, self.best_acc, self.sums = 0, -1.0, [0.0, 0.0, 0.0]
        self.last_eval = (None, None)
        self.log = {"config": dataclasses.asdict(cfg), "steps_per_epoch": self.steps_per_epoch,
                    "total_steps": self.total_steps, "world_size": self.world, "steps": [], "epochs": []}
        self.vdl = None
        if self.main and cfg.visualdl:
            try:
                from visualdl import LogWriter

                self.vdl = LogWriter(os.path.join(cfg.output, "visualdl"))
            except ImportError:
                pass

    def say(self, msg):
        if self.main:
            print(msg, flush=True)

    def path(self, name):
        return os.path.join(self.cfg.output, name)

    def loader(self, dataset, **kw):
        return paddle.io.DataLoader(dataset, num_workers=self.cfg.workers, return_list=True,
                                    use_shared_memory=self.cfg.workers > 0, **kw)

    def resume(self, ckpt):
        self.model.set_state_dict(ckpt["model"])
        load_optimizer_state(self.optimizer, self.model, ckpt["optimizer"])
        self.scheduler.set_state_dict(ckpt["scheduler"])
        restore_rng_state(ckpt["rng"])
        self.step, self.best_acc, self.sums = int(ckpt["step"]), float(ckpt["best_acc"]), list(ckpt["epoch_sums"])
        log_path = self.path("log.json")
        if os.path.isfile(log_path):
            with open(log_path) as f:
                old = json.load(f)
            self.log["steps"] = [s for s in old["steps"] if s["step"] <= self.step]
            self.log["epochs"] = [e for e in old["epochs"] if e["epoch"] < self.step // self.steps_per_epoch]

    def save(self):
        """Checkpoint for ``--resume`` (rank 0), with the logs up to this step."""
        if self.main:
            write_logs(self.cfg.output, self.log)
            save_checkpoint(self.path(CHECKPOINT_NAME), self.model, self.optimizer, self.scheduler,
                            step=self.step, epoch=self.step // self.steps_per_epoch, best_acc=self.best_acc,
                            epoch_sums=list(self.sums), config=dataclasses.asdict(self.cfg),
                            data_order={"seed": self.cfg.seed, "epoch": self.step // self.steps_per_epoch,
                                        "batch_in_epoch": self.step % self.steps_per_epoch})

    def _allreduce(self, values):
        if self.world == 1:
            return values
        t = paddle.to_tensor(np.asarray(values, dtype=np.float64))
        dist.all_reduce(t)
        return t.numpy().tolist()

    def train_step(self, images, labels):
        cfg = self.cfg
        paddle.seed(_step_seed(cfg.seed, self.step, self.rank))
        if self.mixup is not None:
            x, target, _ = self.mixup(images.numpy(), labels.numpy(), key=self.step * self.world + self.rank)
            images, target = paddle.to_tensor(x), paddle.to_tensor(target)
        else:
            target = paddle.to_tensor(one_hot(labels.numpy(), len(self.classes), cfg.smoothing))
        with paddle.amp.auto_cast(enable=self.amp is not None, dtype=self.amp or "float16", level="O1"):
            logits = self.net(images)
        loss = soft_target_cross_entropy(logits, target)
        loss_value = float(loss)
        if not math.isfinite(self._allreduce([loss_value])[0]):
            last = self.path(CHECKPOINT_NAME)
            raise TrainingError(
                f"loss is {loss_value} at step {self.step + 1} (epoch {self.step // self.steps_per_epoch + 1}); stopped. "
                f"The last good checkpoint is untouched: {last if os.path.isfile(last) else 'none written yet'}. "
                "Start again with a lower --lr, --warmup-epochs or --clip-grad (--resume keeps the run's options).")
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.clear_grad()
        lr = self.optimizer.get_lr()
        self.scheduler.step()
        correct = int((logits.argmax(-1) == labels.reshape([-1])).astype("int64").sum())  # labels [B, 1] -> [B]
        n = int(labels.shape[0])
        self.sums = [self.sums[0] + loss_value * n, self.sums[1] + correct, self.sums[2] + n]
        self.step += 1
        if self.main:
            self.log["steps"].append({"step": self.step, "epoch": (self.step - 1) // self.steps_per_epoch,
                                      "loss": loss_value, "lr": lr})
            if self.vdl is not None:
                self.vdl.add_scalar("train/loss", loss_value, self.step)
                self.vdl.add_scalar("train/lr", lr, self.step)
        return loss_value, correct, n, lr

    @paddle.no_grad()
    def evaluate(self):
        """Validation loss/accuracy over the whole test split (sharded across ranks) and images/s."""
        self.model.eval()
        idx = list(range(self.rank, len(self.val_set), self.world))
        subset = paddle.io.Subset(self.val_set, idx)
        loader = self.loader(subset, batch_size=self.cfg.val_batch_size or self.cfg.batch_size, shuffle=False)
        loss_sum = correct = count = 0.0
        model_time = 0.0
        for images, labels in loader:
            t0 = time.perf_counter()
            with paddle.amp.auto_cast(enable=self.amp is not None, dtype=self.amp or "float16", level="O1"):
                logits = self.model(images)
            target = paddle.to_tensor(one_hot(labels.numpy(), len(self.classes), self.cfg.smoothing))
            loss = float(soft_target_cross_entropy(logits, target))
            correct += int((logits.argmax(-1) == labels.reshape([-1])).astype("int64").sum())  # [B, 1] -> [B]
            model_time += time.perf_counter() - t0
            loss_sum += loss * labels.shape[0]
            count += labels.shape[0]
        self.model.train()
        loss_sum, correct, count, model_time = self._allreduce([loss_sum, correct, count, model_time])
        return {"val_loss": loss_sum / max(count, 1), "val_acc": correct / max(count, 1),
                "val_img_per_s": count / model_time if model_time > 0 else 0.0}

    def end_epoch(self, epoch):
        loss_sum, correct, count = self._allreduce(self.sums)
        row = {"epoch": epoch, "step": self.step, "train_loss": loss_sum / max(count, 1),
               "train_acc": correct / max(count, 1), **self.evaluate(), "lr": self.optimizer.get_lr()}
        self.sums = [0.0, 0.0, 0.0]
        self.last_eval = (self.step, {k: row[k] for k in ("val_loss", "val_acc", "val_img_per_s")})
        if self.main:
            self.log["epochs"].append(row)
            if self.vdl is not None:
                for k in ("train_loss", "train_acc", "val_loss", "val_acc"):
                    self.vdl.add_scalar(f"epoch/{k}", row[k], epoch)
        self.update_best(row["val_acc"])
        if self.main:
            self.say(f"epoch {epoch + 1}/{self.cfg.epochs}: "
                     f"train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}% | "
                     f"val loss {row['val_loss']:.4f} acc {100 * row['val_acc']:.2f}% "
                     f"({row['val_img_per_s']:.1f} img/s) | best {100 * self.best_acc:.2f}%")
        self.save()
        self.write_reports()
        return row

    def update_best(self, val_acc):
        """Keep ``best.pdparams``/``best.pdopt`` when ``val_acc`` beats the best so far."""
        if val_acc > self.best_acc:
            self.best_acc = val_acc
            if self.main:
                atomic_save(self.model.state_dict(), self.path("best.pdparams"))
                atomic_save(self.optimizer.state_dict(), self.path("best.pdopt"))

    def write_reports(self):
        if self.main:
            self.log["best_val_acc"] = self.best_acc if self.best_acc >= 0 else None
            self.log["step"] = self.step
            write_logs(self.cfg.output, self.log)
            plot_curves(self.path("curves.png"), self.log)

    def prediction_grid(self, n=18):
        if not self.main:
            return
        self.model.eval()
        n = min(n, len(self.val_set))
        images = np.stack([self.val_set[i][0] for i in range(n)])
        with paddle.no_grad():
            preds = self.model(paddle.to_tensor(images)).argmax(-1).numpy()
        self.model.train()
        plot_predictions(self.path("predictions.png"), self.val_set.images[:n], preds, self.val_set.labels[:n],
                         self.classes)


def _num_cores():
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _local_world_size():
    """Processes of this run on this machine (``paddle.distributed.launch`` sets the env), else 1."""
    return int(os.environ.get("PADDLE_LOCAL_SIZE") or os.environ.get("PADDLE_TRAINERS_NUM") or 1)


def _load_data(cfg):
    """Read ``cfg.data`` (or Paddle's downloaded copy)."""
    return read_cifar10(find_or_download_cifar10(cfg.data))


# Options a resumed run may change; every other option is the saved run's.
_RESUME_OVERRIDES = {"output", "resume", "max_steps", "workers", "threads", "progress", "save_every", "data"}


def _warn_ignored_on_resume(cfg, saved):
    """Say which options given with ``--resume`` are ignored (the run keeps its saved ones)."""
    default = TrainConfig()
    ignored = [f"--{f.name.replace('_', '-')} {getattr(cfg, f.name)} (kept: {getattr(saved, f.name)})"
               for f in dataclasses.fields(TrainConfig)
               if f.name not in _RESUME_OVERRIDES and getattr(cfg, f.name) != getattr(default, f.name)
               and getattr(cfg, f.name) != getattr(saved, f.name)]
    if ignored and dist.get_rank() == 0:
        print("--resume continues the saved run with its own options; ignored: " + ", ".join(ignored), flush=True)


def train(cfg, data=None):
    """Train (or resume) on CIFAR-10 as configured by ``cfg`` (:class:`TrainConfig`).

    Args:
        cfg: The options; ``None`` fields take the model's recipe defaults.
        data: Optional dict as returned by :func:`paddle_vits.data.cifar.read_cifar10`
            (skips reading ``cfg.data``).

    Returns:
        dict: ``best_val_acc``, ``step``, ``epochs`` (per-epoch rows), ``final`` (last evaluation),
        ``output`` (the output dir) and ``model`` (the trained model, unwrapped).

    Raises:
        TrainingError: bad options, unknown model or image size, unreadable --resume or --pretrained
            file, unwritable output dir, NaN loss.
        paddle_vits.data.cifar.CifarError: missing or corrupt dataset.
    """
    ckpt = None
    if cfg.resume:
        try:
            ckpt = load_checkpoint(cfg.resume)
        except (OSError, ValueError) as e:
            raise TrainingError(f"--resume {cfg.resume}: {e}") from e
        saved = TrainConfig(**ckpt["config"])
        _warn_ignored_on_resume(cfg, saved)
        cfg = dataclasses.replace(saved, output=os.fspath(cfg.resume), resume=cfg.resume,
                                  max_steps=cfg.max_steps, workers=cfg.workers, threads=cfg.threads,
                                  progress=cfg.progress, save_every=cfg.save_every, data=cfg.data or saved.data)
    cfg = resolve_config(cfg)
    world = dist.get_world_size()
    set_num_threads(cfg.threads or max(1, _num_cores() // _local_world_size()))
    if world > 1:
        dist.init_parallel_env()
    if dist.get_rank() == 0:
        _check_writable(cfg.output)
    run = _Run(cfg, data if data is not None else _load_data(cfg))
    if ckpt is not None:
        run.resume(ckpt)
        run.say(f"resumed {cfg.output} at step {run.step}/{run.total_steps}")
    if run.main:
        atomic_text(run.path("config.json"), json.dumps(dataclasses.asdict(cfg), indent=1))
        atomic_text(run.path("classes.txt"), "".join(f"{c}\n" for c in run.classes))  # for explain.py --labels
    last_step = min(run.total_steps, cfg.max_steps or run.total_steps)
    from tqdm import tqdm

    while run.step < last_step:
        epoch, skip = divmod(run.step, run.steps_per_epoch)
        run.train_set.set_epoch(epoch)
        run.sampler.set_epoch(epoch, skip)
        loader = run.loader(run.train_set, batch_sampler=run.sampler)
        bar = tqdm(total=run.steps_per_epoch, initial=skip, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not (run.main and cfg.progress), file=sys.stdout, dynamic_ncols=True)
        t0, seen = time.perf_counter(), 0
        for images, labels in loader:
            loss, correct, n, lr = run.train_step(images, labels)
            seen += n * run.world
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", acc=f"{100 * run.sums[1] / max(run.sums[2], 1):.1f}%",
                            lr=f"{lr:.2e}", img_s=f"{seen / (time.perf_counter() - t0):.1f}")
            if cfg.save_every and run.step % cfg.save_every == 0 and run.step % run.steps_per_epoch:
                run.save()
            if run.step >= last_step:
                break
        bar.close()
        if run.step % run.steps_per_epoch == 0:
            run.end_epoch(epoch)
    if run.last_eval[0] == run.step:
        final = run.last_eval[1]
    else:  # stopped mid-epoch by max_steps: evaluate here, keep as best if it is, checkpoint for --resume
        final = run.evaluate()
        run.update_best(final["val_acc"])
        run.save()
    if run.main:
        atomic_save(run.model.state_dict(), run.path("final.pdparams"))
        atomic_save(run.optimizer.state_dict(), run.path("final.pdopt"))
        run.log["final"] = {"step": run.step, **final}
        run.write_reports()
        run.prediction_grid()
        if run.vdl is not None:
            run.vdl.close()
        run.say(f"done at step {run.step}: val acc {100 * final['val_acc']:.2f}%, "
                f"{final['val_img_per_s']:.1f} val img/s; outputs in {cfg.output}")
    return {"best_val_acc": run.best_acc if run.best_acc >= 0 else None, "step": run.step, "epochs": run.log["epochs"],
            "final": final, "output": cfg.output, "model": run.model}
