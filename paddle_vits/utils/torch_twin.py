"""Side-by-side timing against the PyTorch twin of a model (``scripts/benchmark.py --compare-torch``).

The PyTorch model runs in a child process (its own interpreter): Paddle's
OpenMP runtime (``libiomp5``) and torch's (``libgomp``) spin-wait after every
parallel region, so in one process each steals the cores the other is timing
on (measured: torch's linear 3.2 ms alone, 10.5 ms next to Paddle). The two
processes still take turns (A, B, A, B, ...), so both see the same machine
load, and each round records the CPU time other processes used meanwhile.

The twin comes from timm (CaiT, CrossViT); its state dict, its logits on a
fixed input and nothing else come back as a ``.npz`` (read without pickle),
and the parent loads those weights into our model through the converter, so
both time the same weights and the logits are compared.
torch and timm are optional: nothing here imports them in the parent.
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


def twin_available(name):
    """Whether a PyTorch twin of registered model ``name`` is known (timm's name) and torch+timm import."""
    if name not in TIMM_NAMES:
        return False
    try:
        import importlib.util

        return all(importlib.util.find_spec(m) is not None for m in ("torch", "timm"))
    except (ImportError, ValueError):
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


class Contention:
    """CPU seconds other processes used during a timed window (machine busy time minus ours and the twin's)."""

    def __init__(self, pids):
        self.pids = pids

    def __enter__(self):
        self.busy0, self.hz = _cpu_jiffies()
        self.own0 = sum(_proc_cpu_s(p) for p in self.pids)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        busy1, _ = _cpu_jiffies()
        own = sum(_proc_cpu_s(p) for p in self.pids) - self.own0
        self.wall = time.perf_counter() - self.t0
        self.other_cpu_s = max(0.0, (busy1 - self.busy0) / self.hz - own)
        return False


def _worker(spec):
    """Child process: build the timm twin, write its weights + logits, then time on request (stdin lines)."""
    import timm
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model = timm.create_model(TIMM_NAMES[spec["model"]], num_classes=spec["num_classes"], **spec["kwargs"])
    model.eval()
    rng = np.random.default_rng(0)
    probe = torch.from_numpy(rng.standard_normal((1, 3, spec["size"], spec["size"])).astype(np.float32))
    with torch.no_grad():
        logits = model(probe).numpy()
    arrays = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    np.savez(spec["npz"], __logits__=logits, __probe__=probe.numpy(), **arrays)
    bs = spec["batch_size"]
    x = torch.randn(bs, 3, spec["size"], spec["size"])
    y = torch.randint(0, spec["num_classes"], (bs,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def infer():
        with torch.no_grad():
            model(x)

    def train():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()

    fns = dict(infer=infer, train=train)
    print(json.dumps(dict(ready=True, threads=torch.get_num_threads(), torch=torch.__version__,
                          timm=timm.__version__)), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["mode"] == "train":
            model.train()
        else:
            model.eval()
        fn = fns[req["mode"]]
        for _ in range(req["warmup"]):
            fn()
        start = time.perf_counter()
        for _ in range(req["steps"]):
            fn()
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        print(json.dumps(dict(s=(time.perf_counter() - start) / req["steps"], peak_mib=peak_mib)), flush=True)
    return 0


class TorchTwin:
    """The PyTorch twin in a child process; ``time(mode, steps, warmup)`` -> seconds per step."""

    def __init__(self, model_name, num_classes, size, batch_size, threads, kwargs=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="paddle_vits_twin_")
        spec = dict(model=model_name, num_classes=num_classes, size=size, batch_size=batch_size,
                    threads=threads, kwargs=kwargs or {}, npz=os.path.join(self.tmp.name, "twin.npz"))
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

    def time(self, mode, steps, warmup):
        self.proc.stdin.write(json.dumps(dict(mode=mode, steps=steps, warmup=warmup)) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        self.peak_mib = reply["peak_mib"]  # the twin process's peak RSS so far
        return reply["s"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        self.tmp.cleanup()


if __name__ == "__main__":
    sys.exit(_worker(json.loads(sys.argv[1])))
