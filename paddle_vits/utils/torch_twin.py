"""Side-by-side timing against the PyTorch twin of a model (``scripts/benchmark.py --compare-torch``).

The PyTorch model runs in a child process (its own interpreter): Paddle's
OpenMP runtime (``libiomp5``) and torch's (``libgomp``) spin-wait after every
parallel region, so in one process each steals the cores the other is timing
on (measured: torch's linear 3.2 ms alone, 10.5 ms next to Paddle). The two
processes still take turns (A, B, A, B, ...), so both see the same machine
load, and each round records the CPU time other processes used meanwhile.

The twin comes from timm (CaiT, CrossViT) or from the official code in a
folder given by ``--torch-code`` (Wave-ViT: ``wavevit.py`` and
``torch_wavelets.py`` of YehLi/ImageNetModel ``classification/``; CrossFormer:
``models/crossformer.py`` of cheerss/CrossFormer, branch ``crossformer``); see
:func:`find_official_code` for the layouts it accepts. Its state dict, its
logits on a fixed input and nothing else come back as a ``.npz`` (read without
pickle), and the parent loads those weights into our model through the
converter, so both time the same weights and the logits are compared.
torch and timm are optional: nothing here imports them in the parent.

Peak memory is each process's peak resident set (``VmHWM``), reset through
``/proc/<pid>/clear_refs`` before the measured phase where the kernel allows
it, so a training-step peak is not the peak of loading or converting weights.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

# Our registered name -> timm's name of the same model.
TIMM_NAMES = {
    "cait_xxs_24": "cait_xxs24_224", "cait_xxs_36": "cait_xxs36_224", "cait_s_24": "cait_s24_224",
    "crossvit_tiny_224": "crossvit_tiny_240", "crossvit_small_224": "crossvit_small_240",
    "crossvit_base_224": "crossvit_base_240", "crossvit_9_224": "crossvit_9_240",
    "crossvit_15_224": "crossvit_15_240", "crossvit_18_224": "crossvit_18_240",
    "crossvit_9_dagger_224": "crossvit_9_dagger_240", "crossvit_15_dagger_224": "crossvit_15_dagger_240",
    "crossvit_18_dagger_224": "crossvit_18_dagger_240", "crossvit_15_dagger_408": "crossvit_15_dagger_408",
    "crossvit_18_dagger_408": "crossvit_18_dagger_408",
}

_WAVEVIT = dict(
    s=dict(stem_hidden_dim=32, embed_dims=[64, 128, 320, 448], num_heads=[2, 4, 10, 14], mlp_ratios=[8, 8, 4, 4],
           depths=[3, 4, 6, 3], sr_ratios=[4, 2, 1, 1]),
    b=dict(stem_hidden_dim=64, embed_dims=[64, 128, 320, 512], num_heads=[2, 4, 10, 16], mlp_ratios=[8, 8, 4, 4],
           depths=[3, 4, 12, 3], sr_ratios=[4, 2, 1, 1]),
    l=dict(stem_hidden_dim=64, embed_dims=[96, 192, 384, 512], num_heads=[3, 6, 12, 16], mlp_ratios=[8, 8, 4, 4],
           depths=[3, 6, 18, 3], sr_ratios=[4, 2, 1, 1]),
)
_CF_COMMON = dict(patch_size=[4, 8, 16, 32], merge_size=[[2, 4], [2, 4], [2, 4]], group_size=[7, 7, 7, 7])
_CROSSFORMER = dict(
    t=dict(embed_dim=64, depths=[1, 1, 8, 6], num_heads=[2, 4, 8, 16], drop_path_rate=0.1),
    s=dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], drop_path_rate=0.2),
    b=dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], drop_path_rate=0.3),
    l=dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], drop_path_rate=0.5),
)
# Our registered name -> (family, the official class's arguments); the same configs as the official
# factories ``wavevit_{s,b,l}`` and the CrossFormer configs/*.yaml (stochastic depth as ours).
OFFICIAL = {
    **{f"wavevit_{v}{sfx}": ("wavevit", cfg) for v, cfg in _WAVEVIT.items() for sfx in ("", "_384")},
    **{f"crossformer_{v}": ("crossformer", dict(_CF_COMMON, **cfg)) for v, cfg in _CROSSFORMER.items()},
}
# Family -> the official module's file, relative to the folder that goes on sys.path.
OFFICIAL_FILES = {"wavevit": "wavevit.py", "crossformer": os.path.join("models", "crossformer.py")}


def find_official_code(root, family):
    """The folder under ``root`` to put on ``sys.path`` for ``family``'s official code, or None.

    Accepted: ``root`` itself, ``root/classification`` (an ImageNetModel checkout), ``root/<family>``
    and ``root/<family>/classification`` (one folder holding both families' code), each holding
    ``wavevit.py`` (with ``torch_wavelets.py``) or ``models/crossformer.py``.
    """
    if not root:
        return None
    for sub in ("", "classification", family, os.path.join(family, "classification")):
        folder = os.path.join(root, sub)
        if os.path.isfile(os.path.join(folder, OFFICIAL_FILES[family])):
            return os.path.abspath(folder)
    return None


def twin_source(name, torch_code=None):
    """Where the twin of registered model ``name`` comes from: ``"timm"``, an official-code folder, or None."""
    if name in TIMM_NAMES:
        return "timm"
    if name in OFFICIAL:
        return find_official_code(torch_code, OFFICIAL[name][0])
    return None


def twin_available(name, torch_code=None):
    """Whether a PyTorch twin of ``name`` can be built here: torch+timm import and its source is found."""
    if twin_source(name, torch_code) is None:
        return False
    try:
        import importlib.util

        return all(importlib.util.find_spec(m) is not None for m in ("torch", "timm"))
    except (ImportError, ValueError):
        return False


def peak_rss_mib(pid="self"):
    """Peak resident set size of process ``pid`` in MiB (``VmHWM``; ``ru_maxrss`` where unreadable)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def reset_peak_rss(pid="self"):
    """Reset the peak RSS of ``pid`` to its current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _cpu_jiffies():
    """(busy jiffies of the whole machine, jiffies per second) from /proc/stat; (0, 100) when unreadable."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        return sum(vals) - vals[3] - (vals[4] if len(vals) > 4 else 0), os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0, 100


def _proc_cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _thread_cpu_s(pid):
    """``{thread id: CPU seconds}`` of every thread of process ``pid`` (empty where unreadable)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[tid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            continue
    return out


class Contention:
    """CPU seconds other processes used during a timed window (machine busy time minus ours and the twin's).

    ``cores[pid]`` is the CPU time each of ``pids`` used divided by the wall time, and
    ``threads[pid]`` the number of its threads that ran for at least a tenth of the window: the
    threads a timed process actually used (what ``--threads`` asked for, if the runtime obeyed).
    """

    def __init__(self, pids):
        self.pids = pids

    def __enter__(self):
        self.busy0, self.hz = _cpu_jiffies()
        self.own0 = {p: _proc_cpu_s(p) for p in self.pids}
        self.threads0 = {p: _thread_cpu_s(p) for p in self.pids}
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        busy1, _ = _cpu_jiffies()
        own = {p: _proc_cpu_s(p) - self.own0[p] for p in self.pids}
        self.wall = time.perf_counter() - self.t0
        self.other_cpu_s = max(0.0, (busy1 - self.busy0) / self.hz - sum(own.values()))
        self.cores = {p: s / self.wall if self.wall > 0 else 0.0 for p, s in own.items()}
        self.threads = {}
        for p in self.pids:
            after, before = _thread_cpu_s(p), self.threads0[p]
            self.threads[p] = sum(1 for t, s in after.items() if s - before.get(t, 0.0) >= 0.1 * self.wall)
        return False


def _build_official(spec, torch):
    """The official PyTorch model of ``spec["model"]`` from the folder ``spec["code"]`` (a child-only import)."""
    family, cfg = OFFICIAL[spec["model"]]
    sys.path.insert(0, spec["code"])
    kwargs = {**cfg, **spec["kwargs"]}
    if family == "wavevit":
        from functools import partial

        import wavevit

        kwargs.pop("img_size", None)  # the official WaveViT has no position embeddings: any size runs
        model = wavevit.WaveViT(num_classes=spec["num_classes"], norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                                **kwargs)
        model.mix_token = False  # MixToken is a data augmentation; ours has none (forward_token_label)
    else:
        from models.crossformer import CrossFormer

        kwargs["img_size"] = spec["size"]
        model = CrossFormer(num_classes=spec["num_classes"], **kwargs)
    return model.float()  # Wave-ViT keeps its DWT/IDWT filters in float16 (CUDA); the CPU runs float32


def _logits(out):
    """Logits of a forward pass: the official Wave-ViT in train mode returns ``(cls, aux, bbox)``, which
    our model's single output (``head(cls) + 0.5 * max_tokens aux_head(tokens)``) combines."""
    if isinstance(out, tuple):
        return out[0] + 0.5 * out[1].max(1)[0]
    return out


def _worker(spec):
    """Child process: build the twin, write its weights + logits, then time (or profile) on request (stdin)."""
    import timm
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    if spec["model"] in TIMM_NAMES:
        model = timm.create_model(TIMM_NAMES[spec["model"]], num_classes=spec["num_classes"], **spec["kwargs"])
    else:
        model = _build_official(spec, torch)
    model.eval()
    rng = np.random.default_rng(0)
    probe = torch.from_numpy(rng.standard_normal((1, 3, spec["size"], spec["size"])).astype(np.float32))
    with torch.no_grad():
        logits = model(probe).numpy()
    arrays = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    np.savez(spec["npz"], __logits__=logits, __probe__=probe.numpy(), **arrays)
    del arrays
    bs = spec["batch_size"]
    x = torch.randn(bs, 3, spec["size"], spec["size"])
    y = torch.randint(0, spec["num_classes"], (bs,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def infer():
        with torch.no_grad():
            model(x)

    def train():
        loss = torch.nn.functional.cross_entropy(_logits(model(x)), y)
        loss.backward()
        opt.step()
        opt.zero_grad()

    fns = dict(infer=infer, train=train)
    print(json.dumps(dict(ready=True, threads=torch.get_num_threads(), torch=torch.__version__,
                          timm=timm.__version__, source=spec.get("code") or "timm")), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("reset_peak"):
            reply = dict(reset=reset_peak_rss(), rss_mib=peak_rss_mib())
        elif req["mode"] == "profile":
            model.eval()
            for _ in range(req["warmup"]):
                infer()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(req["steps"]):
                    infer()
            reply = dict(table=prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=req["rows"]))
        else:
            model.train() if req["mode"] == "train" else model.eval()
            fn = fns[req["mode"]]
            for _ in range(req["warmup"]):
                fn()
            start = time.perf_counter()
            for _ in range(req["steps"]):
                fn()
            reply = dict(s=(time.perf_counter() - start) / req["steps"], peak_mib=peak_rss_mib())
        print(json.dumps(reply), flush=True)
    return 0


class TorchTwin:
    """The PyTorch twin in a child process; ``time(mode, steps, warmup)`` -> seconds per step.

    ``torch_code``: the official code's folder (Wave-ViT, CrossFormer; see :func:`find_official_code`).
    """

    def __init__(self, model_name, num_classes, size, batch_size, threads, kwargs=None, torch_code=None):
        source = twin_source(model_name, torch_code)
        if source is None:
            raise ValueError(f"no PyTorch twin source for {model_name} (torch_code={torch_code!r})")
        self.tmp = tempfile.TemporaryDirectory(prefix="paddle_vits_twin_")
        spec = dict(model=model_name, num_classes=num_classes, size=size, batch_size=batch_size,
                    threads=threads, kwargs=kwargs or {}, npz=os.path.join(self.tmp.name, "twin.npz"),
                    code=None if source == "timm" else source)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), json.dumps(spec)],  # the file alone: no Paddle there
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._read()
        with np.load(spec["npz"]) as f:  # allow_pickle is off by default
            self.logits = f["__logits__"]
            self.probe = f["__probe__"]
            self.state_dict = {k: f[k] for k in f.files if not k.startswith("__")}

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the PyTorch twin process ended early (run it with --debug to see its error)")
        return json.loads(line)

    def _ask(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def time(self, mode, steps, warmup):
        reply = self._ask(mode=mode, steps=steps, warmup=warmup)
        self.peak_mib = reply["peak_mib"]  # the twin process's peak RSS since the last reset_peak()
        return reply["s"]

    def reset_peak(self):
        """Reset the twin's peak RSS to its current RSS; ``(reset done, current RSS MiB)``."""
        reply = self._ask(reset_peak=True)
        return reply["reset"], reply["rss_mib"]

    def profile(self, steps, warmup, rows=15):
        """torch.profiler's table (CPU, sorted by self CPU time) of ``steps`` inference passes."""
        return self._ask(mode="profile", steps=steps, warmup=warmup, rows=rows)["table"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        self.tmp.cleanup()


if __name__ == "__main__":
    sys.exit(_worker(json.loads(sys.argv[1])))
