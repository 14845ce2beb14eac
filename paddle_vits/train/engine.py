"""The training loop: one code path for CPU, one GPU and many (``paddle.distributed.launch``), for every dataset
of :mod:`paddle_vits.data.datasets`; gradient accumulation, EMA, AMP O1/O2 and recompute as options.

Determinism/resume: the initial weights come from ``seed``; the data order of epoch ``e`` is a permutation drawn from
``(seed, e)``; each sample's augmentation from ``(seed, e, index)``; Mixup from
``(seed, step * accum_steps + micro-batch, rank)``; Paddle's RNG (dropout, drop-path) is re-seeded from
``(seed, step, rank)`` before every step. A run resumed from a checkpoint at
step ``k`` therefore computes exactly the steps an uninterrupted run would.

Safety: nothing is written before every check has passed (options, output directory, data, model,
checkpoint); a fresh run writes its step-0 checkpoint first, so an output directory that holds
anything of a run can always be resumed; every write is atomic.
"""
import contextlib
import ctypes
import dataclasses
import functools
import json
import math
import os
import signal
import sys
import time

import numpy as np
import paddle
import paddle.distributed as dist

from ..data.datasets import ImageDataset
from ..data.mixup import Mixup, one_hot
from ..data.train_transforms import eval_transform, imagenet_eval_transform, imagenet_train_transform, train_transform
from ..utils import set_num_threads
from .checkpoint import CHECKPOINT_NAME, load_optimizer_state, restore_rng_state
from .config import TrainingError, config_to_yaml
from .ema import ModelEma
from .finetune import enable_recompute, freeze_all_but_classifier, layer_decay_scales
from .loss import soft_target_cross_entropy
from .optim import build_optimizer, build_scheduler
from .preflight import build_model, check_resume_fits, data_geometry, start
from .runlog import RunLog
from .sampler import EpochBatchSampler


def _step_seed(seed, step, rank):
    return (int(seed) * 7919 + int(step) * 104729 + int(rank)) % (2 ** 31)


def _die_with_parent(parent_pid, worker_id):
    """DataLoader ``worker_init_fn``: the worker is killed when the trainer dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the trainer died before prctl took effect
        os._exit(1)


class _Run:
    """State of one training run (built by :func:`train` once every check has passed)."""

    def __init__(self, cfg, data, model, log):
        self.cfg, self.model, self.log = cfg, model, log
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        on_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.get_device().startswith("gpu")
        self.amp = cfg.amp if on_gpu else None
        if cfg.amp and not on_gpu:
            log.say(f"--amp {cfg.amp} ignored: paddle.amp.auto_cast does nothing on CPU; training in float32.")
        if cfg.recompute and not on_gpu:
            log.say("--recompute ignored on CPU (it saves GPU memory only); training without it.")
        elif cfg.recompute:
            log.say(f"--recompute: activation checkpointing in {enable_recompute(model)} blocks")
        self.classes = data["classes"]
        if cfg.freeze:
            kept = freeze_all_but_classifier(model)
            log.say(f"--freeze: training only {', '.join(kept)}")
        self.train_set = ImageDataset(*data["train"], transform=self._train_transform(), seed=cfg.seed,
                                      classes=self.classes)
        self.val_set = ImageDataset(*data["test"], transform=self._eval_transform(), classes=self.classes)
        # One sampler batch is one optimizer step: accum_steps micro-batches of batch_size.
        self.sampler = EpochBatchSampler(len(self.train_set), cfg.batch_size * cfg.accum_steps, cfg.seed,
                                         self.rank, self.world)
        self.steps_per_epoch = len(self.sampler)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.scheduler = build_scheduler(cfg.lr, self.total_steps, int(round(cfg.warmup_epochs * self.steps_per_epoch)),
                                         cfg.min_lr)
        scales = layer_decay_scales(model, cfg.layer_decay) if cfg.layer_decay else None
        self.optimizer = build_optimizer(model, cfg.opt, self.scheduler, cfg.lr, cfg.weight_decay, cfg.clip_grad,
                                         lr_scales=scales)
        # The EMA copies the float32 weights before O2 casts them.
        self.ema = ModelEma(model, build_model(cfg, len(self.classes)), cfg.model_ema_decay) if cfg.model_ema else None
        if self.amp is not None and cfg.amp_level == "O2":
            model, self.optimizer = paddle.amp.decorate(models=model, optimizers=self.optimizer, level="O2",
                                                        dtype=self.amp, master_weight=True)
            self.model = model
        elif cfg.amp_level == "O2" and cfg.amp:
            log.say("--amp-level O2 ignored on CPU.")
        self.net = paddle.DataParallel(model) if self.world > 1 else model
        self.scaler = paddle.amp.GradScaler() if self.amp == "float16" else None
        self.mixup = (Mixup(cfg.mixup, cfg.cutmix, cfg.mixup_prob, smoothing=cfg.smoothing,
                            num_classes=len(self.classes), seed=cfg.seed) if (cfg.mixup or cfg.cutmix) else None)
        self.geometry = data_geometry(data, cfg.batch_size, self.world, cfg.accum_steps)
        self.step, self.best_acc, self.sums = 0, -1.0, [0.0, 0.0, 0.0]
        self.last_eval = (None, None)

    def _train_transform(self):
        cfg = self.cfg
        if cfg.aug == "imagenet":
            return imagenet_train_transform(cfg.img_size, randaug_n=cfg.randaug_n, randaug_m=cfg.randaug_m,
                                            reprob=cfg.reprob)
        return train_transform(cfg.img_size)

    def _eval_transform(self):
        return imagenet_eval_transform(self.cfg.img_size) if self.cfg.aug == "imagenet" else eval_transform(
            self.cfg.img_size)

    def loader(self, dataset, **kw):
        workers = self.cfg.workers
        return paddle.io.DataLoader(dataset, num_workers=workers, return_list=True, use_shared_memory=workers > 0,
                                    worker_init_fn=functools.partial(_die_with_parent, os.getpid()) if workers
                                    else None, **kw)

    def resume(self, ckpt):
        self.model.set_state_dict(ckpt["model"])
        load_optimizer_state(self.optimizer, self.model, ckpt["optimizer"])
        self.scheduler.set_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None:
            if ckpt.get("model_ema") is None:
                raise TrainingError(f"--resume {self.cfg.resume}: the checkpoint has no EMA weights",
                                    "resume without --model-ema, or start a new run")
            self.ema.set_state_dict(ckpt["model_ema"])
        restore_rng_state(ckpt["rng"])
        self.step, self.best_acc, self.sums = int(ckpt["step"]), float(ckpt["best_acc"]), list(ckpt["epoch_sums"])
        self.log.restore(self.step, self.steps_per_epoch)

    def save(self):
        """Checkpoint for ``--resume`` (rank 0), with the logs up to this step."""
        epoch, batch = divmod(self.step, self.steps_per_epoch)
        self.log.checkpoint(self.model, self.optimizer, self.scheduler, self.scaler, step=self.step, epoch=epoch,
                            best_acc=self.best_acc, epoch_sums=list(self.sums), config=dataclasses.asdict(self.cfg),
                            geometry=self.geometry,
                            model_ema=self.ema.state_dict() if self.ema is not None else None,
                            data_order={"seed": self.cfg.seed, "epoch": epoch, "batch_in_epoch": batch})

    def _allreduce(self, values):
        if self.world == 1:
            return values
        t = paddle.to_tensor(np.asarray(values, dtype=np.float64))
        dist.all_reduce(t)
        return t.numpy().tolist()

    def _autocast(self):
        return paddle.amp.auto_cast(enable=self.amp is not None, dtype=self.amp or "float16",
                                    level=self.cfg.amp_level if self.amp else "O1")

    def _micro_step(self, images, labels, key, sync):
        """Forward and backward of one micro-batch (loss scaled by 1/accum_steps); returns (loss, correct)."""
        cfg = self.cfg
        if self.mixup is not None:
            x, target, _ = self.mixup(images.numpy(), labels.numpy(), key=key)
            images, target = paddle.to_tensor(x), paddle.to_tensor(target)
        else:
            target = paddle.to_tensor(one_hot(labels.numpy(), len(self.classes), cfg.smoothing))
        # Inner micro-batches of a data-parallel step skip the gradient all-reduce (no_sync): the last one
        # all-reduces the accumulated gradients once.
        with (contextlib.nullcontext() if sync or self.world == 1 else self.net.no_sync()):
            with self._autocast():
                logits = self.net(images)
            loss = soft_target_cross_entropy(logits, target)
            scaled = loss / cfg.accum_steps if cfg.accum_steps > 1 else loss
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        correct = int((logits.argmax(-1) == labels.reshape([-1])).astype("int64").sum())  # labels [B, 1] -> [B]
        return float(loss), correct

    def train_step(self, images, labels):
        cfg = self.cfg
        paddle.seed(_step_seed(cfg.seed, self.step, self.rank))
        n_acc, b = cfg.accum_steps, cfg.batch_size
        losses, correct = [], 0
        for i in range(n_acc):
            part = slice(i * b, (i + 1) * b)
            loss_i, correct_i = self._micro_step(images[part], labels[part],
                                                 key=(self.step * n_acc + i) * self.world + self.rank,
                                                 sync=i == n_acc - 1)
            losses.append(loss_i)
            correct += correct_i
        loss_value = float(np.mean(losses))
        if not math.isfinite(self._allreduce([loss_value])[0]):
            last = self.log.path(CHECKPOINT_NAME)
            raise TrainingError(
                f"loss is {loss_value} at step {self.step + 1} (epoch {self.step // self.steps_per_epoch + 1}); "
                f"stopped. The last good checkpoint is untouched: {last if os.path.isfile(last) else 'none'}",
                "start again with --overwrite and a lower --lr, --warmup-epochs or --clip-grad "
                "(--resume keeps the run's options)")
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.clear_grad()
        if self.ema is not None:
            self.ema.update(self.model)
        lr = self.optimizer.get_lr()
        self.scheduler.step()
        n = int(labels.shape[0])
        self.sums = [self.sums[0] + loss_value * n, self.sums[1] + correct, self.sums[2] + n]
        self.step += 1
        self.log.add_step({"step": self.step, "epoch": (self.step - 1) // self.steps_per_epoch, "loss": loss_value,
                           "lr": lr})
        return loss_value, n, lr

    @paddle.no_grad()
    def evaluate(self, model=None, confusion=False):
        """Validation loss, top-1/top-5 accuracy over the whole val split (sharded across ranks) and images/s;
        with ``confusion`` also the confusion matrix (rows: true class, columns: predicted)."""
        model = model if model is not None else self.model
        was_training = model.training
        model.eval()
        subset = paddle.io.Subset(self.val_set, list(range(self.rank, len(self.val_set), self.world)))
        loader = self.loader(subset, batch_size=self.cfg.val_batch_size or self.cfg.batch_size, shuffle=False)
        num_classes = len(self.classes)
        loss_sum = correct = correct5 = count = model_time = 0.0
        matrix = np.zeros((num_classes, num_classes), np.int64)
        k = min(5, num_classes)
        for images, labels in loader:
            t0 = time.perf_counter()
            with self._autocast():
                logits = model(images)
            logits = logits.astype("float32")
            target = paddle.to_tensor(one_hot(labels.numpy(), num_classes, self.cfg.smoothing))
            loss = float(soft_target_cross_entropy(logits, target))
            y = labels.numpy().reshape(-1)  # [B, 1] -> [B]
            topk = paddle.topk(logits, k, axis=-1)[1].numpy()
            model_time += time.perf_counter() - t0
            correct += int((topk[:, 0] == y).sum())
            correct5 += int((topk == y[:, None]).any(-1).sum())
            if confusion:
                np.add.at(matrix, (y, topk[:, 0]), 1)
            loss_sum += loss * len(y)
            count += len(y)
        if was_training:
            model.train()
        loss_sum, correct, correct5, count, model_time = self._allreduce([loss_sum, correct, correct5, count,
                                                                          model_time])
        out = {"val_loss": loss_sum / max(count, 1), "val_acc": correct / max(count, 1),
               "val_top5": correct5 / max(count, 1), "val_img_per_s": count / model_time if model_time > 0 else 0.0}
        if confusion:
            out["confusion"] = np.rint(self._allreduce(matrix.ravel().astype(np.float64))).astype(np.int64).reshape(
                num_classes, num_classes).tolist()  # [C * C] -> [C, C]
        return out

    def evaluate_all(self, confusion=False):
        """:meth:`evaluate` of the weights, and of the EMA (its keys with ``_ema``) when there is one."""
        row = self.evaluate(confusion=confusion)
        if self.ema is not None:
            ema = self.evaluate(self.ema.module, confusion=confusion)
            row.update({f"{k}_ema": v for k, v in ema.items() if k != "val_img_per_s"})
        return row

    def end_epoch(self, epoch):
        loss_sum, correct, count = self._allreduce(self.sums)
        row = {"epoch": epoch, "step": self.step, "train_loss": loss_sum / max(count, 1),
               "train_acc": correct / max(count, 1), **self.evaluate_all(), "lr": self.optimizer.get_lr()}
        self.sums = [0.0, 0.0, 0.0]
        self.last_eval = (self.step, {k: v for k, v in row.items() if k.startswith("val_")})
        self.log.add_epoch(row)
        self.update_best(row["val_acc"])
        self.log.say(f"epoch {epoch + 1}/{self.cfg.epochs}: "
                     f"train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}% | "
                     f"val loss {row['val_loss']:.4f} acc {100 * row['val_acc']:.2f}% "
                     f"top-5 {100 * row['val_top5']:.2f}% ({row['val_img_per_s']:.1f} img/s)"
                     + (f" | EMA acc {100 * row['val_acc_ema']:.2f}%" if "val_acc_ema" in row else "")
                     + f" | best {100 * self.best_acc:.2f}%")
        self.save()
        self.write_reports()

    def update_best(self, val_acc):
        """Keep ``best.pdparams``/``best.pdopt`` when ``val_acc`` beats the best so far."""
        if val_acc > self.best_acc:
            self.best_acc = val_acc
            self.log.save(self.model.state_dict(), "best.pdparams")
            self.log.save(self.optimizer.state_dict(), "best.pdopt")
            if self.ema is not None:
                self.log.save(self.ema.state_dict(), "best_ema.pdparams")

    def write_reports(self):
        self.log.data["best_val_acc"] = self.best_acc if self.best_acc >= 0 else None
        self.log.data["step"] = self.step
        self.log.write_reports()

    def prediction_grid(self, n=18):
        if not self.log.writer:
            return
        self.model.eval()
        n = min(n, len(self.val_set))
        images = np.stack([self.val_set[i][0] for i in range(n)])
        with paddle.no_grad():
            preds = self.model(paddle.to_tensor(images)).argmax(-1).numpy()
        self.model.train()
        self.log.predictions(np.stack([self.val_set.thumbnail(i) for i in range(n)]), preds, self.val_set.labels[:n],
                             self.classes)

    def final_report(self):
        """Evaluation of the final weights with the confusion matrix: per-class accuracy in ``per_class.csv``,
        the matrix in ``confusion.json`` (and ``confusion.png`` for up to 100 classes); EMA's with ``_ema``."""
        final = self.evaluate_all(confusion=True)
        for suffix in ("", "_ema"):
            matrix = final.pop(f"confusion{suffix}", None)
            if matrix is not None:
                self.log.class_report(matrix, self.classes, suffix)
        return final

    def finish(self):
        """Final evaluation (with the per-class report), final weights and reports."""
        had_eval = self.last_eval[0] == self.step
        final = self.final_report()
        if not had_eval:  # stopped mid-epoch by max_steps, or resumed at the end: keep as best if it is, checkpoint
            self.update_best(final["val_acc"])
            self.save()
        self.log.save(self.model.state_dict(), "final.pdparams")
        self.log.save(self.optimizer.state_dict(), "final.pdopt")
        if self.ema is not None:
            self.log.save(self.ema.state_dict(), "final_ema.pdparams")
        self.log.data["final"] = {"step": self.step, **final}
        self.write_reports()
        self.prediction_grid()
        self.log.close()
        self.log.say(f"done at step {self.step}: val acc {100 * final['val_acc']:.2f}% "
                     f"(top-5 {100 * final['val_top5']:.2f}%)"
                     + (f", EMA {100 * final['val_acc_ema']:.2f}%" if "val_acc_ema" in final else "")
                     + f", {final['val_img_per_s']:.1f} val img/s; outputs in {self.cfg.output}")
        return final


def _num_cores():
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _local_world_size():
    """Processes of this run on this machine (``paddle.distributed.launch`` sets the env), else 1."""
    return int(os.environ.get("PADDLE_LOCAL_SIZE") or os.environ.get("PADDLE_TRAINERS_NUM") or 1)


def _eval_only(run, ckpt, log):
    """``--eval-only``: evaluate the checkpoint's weights (and EMA), write ``eval.json`` and the class report."""
    if ckpt is None:
        raise TrainingError("--eval-only evaluates a run's checkpoint: it needs --resume DIR",
                            "pass --resume with the run's output directory")
    run.model.set_state_dict(ckpt["model"])
    if run.ema is not None and ckpt.get("model_ema") is not None:
        run.ema.set_state_dict(ckpt["model_ema"])
    final = run.final_report()
    log.write_text("eval.json", json.dumps({"step": int(ckpt["step"]), **final}, indent=1))
    log.say(f"{run.cfg.output} at step {int(ckpt['step'])}: val acc {100 * final['val_acc']:.2f}% "
            f"top-5 {100 * final['val_top5']:.2f}%"
            + (f", EMA {100 * final['val_acc_ema']:.2f}%" if "val_acc_ema" in final else ""))
    return {"final": final, "step": int(ckpt["step"]), "output": run.cfg.output, "model": run.model}


def train(cfg, data=None):
    """Train, resume, or (``eval_only``) evaluate as configured by ``cfg`` (:class:`~paddle_vits.train.TrainConfig`).

    Args:
        cfg: The options; ``None`` fields take the model's recipe defaults.
        data: Optional dict as returned by :func:`paddle_vits.data.datasets.read_dataset`
            (skips reading ``cfg.data``).

    Returns:
        dict: ``best_val_acc``, ``step``, ``epochs`` (per-epoch rows), ``final`` (last evaluation),
        ``output`` (the output dir), ``model`` (the trained model, unwrapped) and ``ema`` (the EMA model or
        ``None``).

    Raises:
        TrainingError: bad option, unknown model or image size, an output dir that holds a run (without
            ``resume``/``overwrite``), unreadable or mismatching ``resume`` checkpoint, bad ``pretrained``
            file, unwritable output dir, NaN loss. Nothing is written before these checks pass.
        paddle_vits.data.cifar.CifarError: missing or corrupt dataset.
    """
    cfg, ckpt, data, model, reinitialised = start(cfg, data)
    world = dist.get_world_size()
    set_num_threads(cfg.threads or max(1, _num_cores() // _local_world_size()))
    if world > 1:
        dist.init_parallel_env()
    log = RunLog(cfg.output, dist.get_rank() == 0, {"config": dataclasses.asdict(cfg)}, cfg.visualdl,
                 cfg.progress)
    run = _Run(cfg, data, model, log)
    log.data.update(steps_per_epoch=run.steps_per_epoch, total_steps=run.total_steps, world_size=run.world)
    if ckpt is not None:
        check_resume_fits(ckpt, run.geometry, model, cfg)
    if cfg.eval_only:
        return _eval_only(run, ckpt, log)
    log.prepare(cfg.overwrite)
    if ckpt is not None:
        run.resume(ckpt)
        log.say(f"resumed {cfg.output} at step {run.step}/{run.total_steps}")
    else:
        run.save()  # step 0: from now on the directory can always be resumed
        if reinitialised is not None:
            log.say(f"loaded {cfg.pretrained}; re-initialised {', '.join(reinitialised) or 'nothing'}")
    log.write_text("config.json", json.dumps(dataclasses.asdict(cfg), indent=1))
    log.write_text("config.yaml", config_to_yaml(cfg))  # the resolved recipe: --config config.yaml repeats the run
    log.write_text("classes.txt", "".join(f"{c}\n" for c in run.classes))  # for explain.py --labels
    last_step = min(run.total_steps, cfg.max_steps or run.total_steps)
    while run.step < last_step:
        epoch, skip = divmod(run.step, run.steps_per_epoch)
        run.train_set.set_epoch(epoch)
        run.sampler.set_epoch(epoch, skip)
        bar = log.progress(run.steps_per_epoch, skip, f"epoch {epoch + 1}/{cfg.epochs}")
        t0, seen = time.perf_counter(), 0
        for images, labels in run.loader(run.train_set, batch_sampler=run.sampler):
            loss, n, lr = run.train_step(images, labels)
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
    final = run.finish()
    return {"best_val_acc": run.best_acc if run.best_acc >= 0 else None, "step": run.step,
            "epochs": log.data["epochs"], "final": final, "output": cfg.output, "model": run.model,
            "ema": run.ema.module if run.ema is not None else None}
