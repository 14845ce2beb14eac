"""Pretrained weights by name (paddle_vits.hub) against a real HTTP server on 127.0.0.1.

The server serves a generated checkpoint in the timm/official key layout of the
``cait_small`` parity fixture (seeded weights of a 2-block CaiT), registered as a
test-only release of ``cait_xxs_24`` through :func:`paddle_vits.hub.add_weights`;
loading it must reproduce the fixture's official logits.
"""
import hashlib
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import paddle
import pytest

from _parity import load_fixture, seeded_state_dict
from paddle_vits import create_model, hub
from paddle_vits.hub import Weights, WeightsError, http_source
from paddle_vits.utils import compat

HERE = os.path.dirname(os.path.abspath(__file__))
SMALL = dict(img_size=32, embed_dim=48, depth=2, num_heads=4)  # the cait_small fixture's config
MODEL, TAG, FILE = "cait_xxs_24", "test_small", "cait_small_test.safetensors"


def _checkpoint_bytes():
    from safetensors.numpy import save

    meta, _, _ = load_fixture(os.path.join(HERE, "fixtures", "cait_small.npz"))
    return save(seeded_state_dict(meta["keys"], meta["seed"]))


DATA = _checkpoint_bytes()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files[name]`` with Range support; ``server.mode[name]`` picks a misbehaviour."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        name = self.path.lstrip("/").split("?")[0]
        srv.requests.append((name, self.headers.get("Range")))
        mode = srv.mode.get(name, "ok")
        if name == "drive":  # Drive's "can't scan for viruses" page pointing at the real file
            page = srv.pages["drive"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        if name not in srv.files or mode == "404":
            self.send_error(404, "Not Found")
            return
        if mode == "503_once" and not srv.dropped.get(name):
            srv.dropped[name] = True
            self.send_error(503, "Service Unavailable")
            return
        data = srv.files[name]
        if mode == "stall":
            srv.release.wait(10)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and mode != "no_range":
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if mode == "drop_once" and not srv.dropped.get(name):
            srv.dropped[name] = True
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "stall_once" and not srv.dropped.get(name):  # half the file, then silence
            srv.dropped[name] = True
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            srv.release.wait(10)
            return
        if mode == "slow":  # about 3 s: long enough for a second process to be waiting on the lock
            step = max(1, len(body) // 60)
            for i in range(0, len(body), step):
                self.wfile.write(body[i:i + step])
                time.sleep(0.05)
            srv.finished = time.time()
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.files, srv.mode, srv.requests, srv.dropped, srv.pages = {FILE: DATA}, {}, [], {}, {}
    srv.release = threading.Event()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def _closed_port_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def release(tmp_path, monkeypatch):
    """Register the test release (known size and sha256), an empty cache and no mirror from the environment."""
    monkeypatch.setenv("PADDLE_VITS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PADDLE_VITS_MIRROR", raising=False)

    def add(size=len(DATA), sha256=hashlib.sha256(DATA).hexdigest(), url=None, tag=TAG):
        w = Weights(tag, (http_source(url or f"{_closed_port_url()}/{FILE}", size=size, sha256=sha256),),
                    trained_on="seeded test weights", model_kwargs=SMALL)
        hub.add_weights(MODEL, w)
        added.append(tag)
        return w

    added = []
    yield add
    for tag in added:
        hub.remove_weights(MODEL, tag)


def _cache(tmp_path):
    return tmp_path / "home" / "weights" / MODEL


def _fixture_logits(model):
    meta, x, ref = load_fixture(os.path.join(HERE, "fixtures", "cait_small.npz"))
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy(), ref


def test_first_load_downloads_converts_and_caches_second_makes_no_request(server, release, tmp_path):
    release()
    path = hub.resolve_pretrained(MODEL, TAG, mirror=server.url, progress=False)
    assert path == str(_cache(tmp_path) / f"{MODEL}.{TAG}.pdparams")
    assert (_cache(tmp_path) / FILE).read_bytes() == DATA
    assert server.requests == [(FILE, None)]
    model = create_model(MODEL, pretrained=TAG, num_classes=10, **SMALL)  # the hook, from the cache
    got, ref = _fixture_logits(model)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert hub.resolve_pretrained(MODEL, TAG, mirror=server.url) == path
    assert server.requests == [(FILE, None)]
    assert not [f for f in os.listdir(_cache(tmp_path)) if f.startswith(".partial")]


@pytest.mark.parametrize("model,fixture", [("cait_xxs_24", "cait_small"), ("wavevit_s", "wavevit_small")])
def test_official_pth_layout_is_converted_on_download(server, tmp_path, monkeypatch, model, fixture):
    """The official release formats: CaiT ``{"model": {"module.<name>": ...}}`` (DDP), Wave-ViT
    ``{"state_dict": ..., "args": argparse.Namespace}`` (read by the restricted unpickler)."""
    torch = pytest.importorskip("torch")
    import argparse

    monkeypatch.setenv("PADDLE_VITS_HOME", str(tmp_path / "home"))
    meta, x, ref = load_fixture(os.path.join(HERE, "fixtures", f"{fixture}.npz"))
    sd = {k: torch.from_numpy(v) for k, v in seeded_state_dict(meta["keys"], meta["seed"]).items()}
    if model == "cait_xxs_24":
        obj = {"model": {"module." + k: v for k, v in sd.items()}, "epoch": 399}
    else:
        obj = {"state_dict": sd, "epoch": 299, "args": argparse.Namespace(model=model, token_label=True)}
    buf = io.BytesIO()
    torch.save(obj, buf)
    name = f"{fixture}_official.pth"
    server.files[name] = buf.getvalue()
    hub.add_weights(model, Weights("test_official", (http_source(f"https://official.invalid/{name}"),),
                                   model_kwargs=meta["kwargs"]))
    try:
        path = hub.resolve_pretrained(model, "test_official", mirror=server.url, progress=False)
    finally:
        hub.remove_weights(model, "test_official")
    net = create_model(model, pretrained=path, num_classes=ref.shape[-1], **meta["kwargs"]).eval()
    with paddle.no_grad():
        np.testing.assert_allclose(net(paddle.to_tensor(x)).numpy(), ref, atol=meta["atol"])


def test_mirror_from_the_environment_replaces_the_official_host(server, release, monkeypatch):
    release(url="https://official.invalid/" + FILE)
    monkeypatch.setenv("PADDLE_VITS_MIRROR", server.url + "/")
    hub.resolve_pretrained(MODEL, TAG, progress=False)
    assert server.requests == [(FILE, None)]  # <mirror>/<primary file name>, the official host untouched


def test_interrupted_download_resumes_with_range(server, release):
    release()
    server.mode[FILE] = "drop_once"
    path = hub.resolve_pretrained(MODEL, TAG, mirror=server.url, progress=False, retries=3)
    half = len(DATA) // 2
    assert server.requests == [(FILE, None), (FILE, f"bytes={half}-")]
    model = create_model(MODEL, pretrained=path, num_classes=10, **SMALL)
    np.testing.assert_allclose(*_fixture_logits(model), atol=1e-4)


@pytest.mark.parametrize("mode", ["ok", "no_range"])
def test_partial_file_left_by_an_earlier_run_is_resumed_or_restarted(server, release, tmp_path, mode):
    release()
    folder = _cache(tmp_path)
    folder.mkdir(parents=True)
    (folder / f".partial-{FILE}").write_bytes(DATA[:1000])
    server.mode[FILE] = mode  # "no_range": the server ignores Range and sends the whole file (200)
    hub.resolve_pretrained(MODEL, TAG, mirror=server.url, progress=False)
    assert server.requests == [(FILE, "bytes=1000-")]
    assert (folder / FILE).read_bytes() == DATA


@pytest.mark.parametrize("known", ["sha256", "size", "nothing"])
def test_corrupted_or_wrong_size_download_is_refused_and_not_cached(server, release, tmp_path, known):
    bad = bytearray(DATA)
    if known == "size":
        bad = bad[:-10]
        release(sha256=None)
    elif known == "sha256":
        bad[len(bad) // 2] ^= 0xFF
        release(size=None)
    else:  # no size or sha256 published: the strict conversion refuses a truncated file
        bad = bad[: len(bad) // 3]
        release(size=None, sha256=None)
    server.files[FILE] = bytes(bad)
    match = {"sha256": "sha256", "size": "bytes, expected", "nothing": "not a valid cait_xxs_24 checkpoint"}[known]
    with pytest.raises(WeightsError, match=match):
        hub.resolve_pretrained(MODEL, TAG, mirror=server.url, progress=False)
    assert [f for f in os.listdir(_cache(tmp_path)) if not f.endswith(".lock")] == []
    server.files[FILE] = DATA  # the next try downloads again and succeeds
    assert os.path.isfile(hub.resolve_pretrained(MODEL, TAG, mirror=server.url, progress=False))


def test_stalled_server_times_out_with_a_clear_message(server, release, tmp_path):
    release()
    server.mode[FILE] = "stall"
    t0 = time.monotonic()
    with pytest.raises(WeightsError) as e:
        hub.resolve_pretrained(MODEL, TAG, mirror=server.url, progress=False, timeout=0.5, retries=2)
    assert time.monotonic() - t0 < 6
    msg = str(e.value)
    assert "timed out" in msg and f"{server.url}/{FILE}" in msg
    assert str(_cache(tmp_path) / FILE) in msg


def test_server_error_is_retried_with_backoff(server, release):
    release()
    server.mode[FILE] = "503_once"
    hub.resolve_pretrained(MODEL, TAG, mirror=server.url, progress=False, retries=2)
    assert server.requests == [(FILE, None), (FILE, None)]


def test_stall_in_the_middle_times_out_and_the_retry_resumes(server, release):
    release()
    server.mode[FILE] = "stall_once"
    t0 = time.monotonic()
    hub.resolve_pretrained(MODEL, TAG, mirror=server.url, progress=False, timeout=0.5, retries=2)
    assert time.monotonic() - t0 < 6
    assert server.requests == [(FILE, None), (FILE, f"bytes={len(DATA) // 2}-")]


def test_404_names_url_file_and_cache_path(server, release, tmp_path):
    release_url = release().primary.url
    server.mode[FILE] = "404"
    with pytest.raises(WeightsError) as e:
        hub.resolve_pretrained(MODEL, TAG, mirror=server.url, progress=False)
    msg = str(e.value)
    assert "HTTP 404" in msg and f"{server.url}/{FILE}" in msg
    assert f"put the file {FILE} (from {release_url}) at {_cache(tmp_path) / FILE}" in msg
    assert [r[0] for r in server.requests] == [FILE]  # a 404 is not retried


def test_offline_names_the_official_url_and_where_to_put_the_file(release, tmp_path):
    w = release()
    t0 = time.monotonic()
    with pytest.raises(WeightsError) as e:
        hub.resolve_pretrained(MODEL, TAG, progress=False, timeout=2)
    assert time.monotonic() - t0 < 5  # a refused connection is not retried for long
    msg = str(e.value)
    assert w.primary.url in msg and "cannot connect" in msg
    assert str(_cache(tmp_path) / FILE) in msg and "PADDLE_VITS_MIRROR" in msg


def test_unwritable_cache_says_how_to_move_it(release, tmp_path, monkeypatch):
    release()
    (tmp_path / "home").write_text("a file where the cache folder should be")
    with pytest.raises(WeightsError, match="cannot write the weights cache.*set PADDLE_VITS_HOME"):
        hub.resolve_pretrained(MODEL, TAG, progress=False)


def test_dropped_in_file_is_verified_and_used_without_network(release, tmp_path):
    release()
    folder = _cache(tmp_path)
    folder.mkdir(parents=True)
    (folder / FILE).write_bytes(DATA)
    path = hub.resolve_pretrained(MODEL, TAG, progress=False)  # the official URL is unreachable
    model = create_model(MODEL, pretrained=path, num_classes=10, **SMALL)
    np.testing.assert_allclose(*_fixture_logits(model), atol=1e-4)


def test_dropped_in_file_of_the_wrong_size_is_refused(release, tmp_path):
    release()
    folder = _cache(tmp_path)
    folder.mkdir(parents=True)
    (folder / FILE).write_bytes(DATA[:-1])
    with pytest.raises(WeightsError, match="expected"):
        hub.resolve_pretrained(MODEL, TAG, progress=False)


_CHILD = """
import json, sys, time
from paddle_vits import hub
from paddle_vits.hub import Weights, http_source
a = json.loads(sys.argv[1])
hub.add_weights(a["model"], Weights(a["tag"], (http_source(a["url"], size=a["size"], sha256=a["sha"]),),
                                     model_kwargs=a["kwargs"]))
print("start", time.time(), file=sys.stderr, flush=True)
print(hub.resolve_pretrained(a["model"], a["tag"], mirror=a["mirror"], progress=False))
"""


def test_two_processes_loading_the_same_file_leave_a_valid_cache(server, release, tmp_path):
    w = release()
    server.mode[FILE] = "slow"
    arg = json.dumps(dict(model=MODEL, tag=TAG, url=w.primary.url, size=w.primary.size, sha=w.primary.sha256,
                          kwargs=SMALL, mirror=server.url))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.path.dirname(HERE))
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, arg], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    paths = {o[0].strip().splitlines()[-1] for o in outs}
    assert paths == {str(_cache(tmp_path) / f"{MODEL}.{TAG}.pdparams")}
    starts = [float(line.split()[1]) for o in outs for line in o[1].splitlines() if line.startswith("start ")]
    assert len(starts) == 2 and max(starts) < server.finished  # both asked while the download was running
    assert [r[0] for r in server.requests] == [FILE]  # one download; the other process waited for it
    assert (_cache(tmp_path) / FILE).read_bytes() == DATA
    model = create_model(MODEL, pretrained=paths.pop(), num_classes=10, **SMALL)
    np.testing.assert_allclose(*_fixture_logits(model), atol=1e-4)


# ---------------------------------------------------------------- Google Drive fallback

# Recorded (hand-written after Drive's real answers) pages.
DRIVE_VIRUS_SCAN = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<div class="uc-main"><div id="uc-text"><p class="uc-warning-caption">Google Drive can't scan this file for viruses.</p>
<p class="uc-warning-subcaption"><span class="uc-name-size"><a href="/open?id=1DLdqLRPiARBXAc9DQQtamVZnFtMWBurd">
wavevit_s.pth.tar</a> (270M)</span> is too large for Google to scan for viruses. Would you still like to download this file?</p>
<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">
<input type="submit" id="uc-download-link" class="goog-inline-block jfk-button jfk-button-action" value="Download anyway"/>
<input type="hidden" name="id" value="1DLdqLRPiARBXAc9DQQtamVZnFtMWBurd">
<input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t">
<input type="hidden" name="uuid" value="5f0c2d2e-8a51-4c3b-9a0e-3b1f6a2f1c44"></form></div></div></body></html>"""

DRIVE_OLD_CONFIRM = """<html><body><div id="uc-download-url"><a id="uc-download-link" class="goog-inline-block jfk-button"
href="/uc?export=download&amp;confirm=Hf3k&amp;id=1g-_eP_ty1JmEsiRqmErwFgf4XTo0ML61">Download anyway</a></div></body></html>"""

DRIVE_QUOTA = """<html><head><title>Google Drive - Quota exceeded</title></head><body><p>Too many users have
viewed or downloaded this file recently. Please try accessing the file again later.</p></body></html>"""

DRIVE_SIGN_IN = """<html><head><title>Google Drive</title></head><body><a href="https://accounts.google.com/ServiceLogin">
Sign in</a></body></html>"""


def test_drive_confirmation_form_gives_the_download_url():
    url = hub.drive_confirm_url(DRIVE_VIRUS_SCAN, "https://drive.usercontent.google.com/download?id=x")
    assert url == ("https://drive.usercontent.google.com/download?id=1DLdqLRPiARBXAc9DQQtamVZnFtMWBurd"
                   "&export=download&confirm=t&uuid=5f0c2d2e-8a51-4c3b-9a0e-3b1f6a2f1c44")


def test_drive_old_confirm_link_is_resolved_against_the_page_url():
    url = hub.drive_confirm_url(DRIVE_OLD_CONFIRM, "https://drive.google.com/uc?export=download&id=1g")
    assert url == "https://drive.google.com/uc?export=download&confirm=Hf3k&id=1g-_eP_ty1JmEsiRqmErwFgf4XTo0ML61"


@pytest.mark.parametrize("page,match", [(DRIVE_QUOTA, "quota"), (DRIVE_SIGN_IN, "sign in"),
                                        ("<html><body>Error 500</body></html>", "page instead of the file")])
def test_drive_pages_without_a_download_say_why(page, match):
    with pytest.raises(WeightsError, match=match):
        hub.drive_confirm_url(page, "https://drive.google.com/uc?id=x")


def test_drive_ids_and_urls():
    assert hub.drive_file_id("https://drive.google.com/file/d/1aR_5zZ-iVDbUyEEMkvYNV7Nj78C7dJ6G/view?usp=sharing") \
        == "1aR_5zZ-iVDbUyEEMkvYNV7Nj78C7dJ6G"
    assert hub.drive_file_id("https://drive.google.com/uc?export=download&id=1aR_5zZ-iVDbUyEEMkvYNV7N") \
        == "1aR_5zZ-iVDbUyEEMkvYNV7N"
    with pytest.raises(WeightsError, match="file id"):
        hub.drive_file_id("https://drive.google.com/drive/folders")
    assert hub.drive_download_url("abc") == "https://drive.usercontent.google.com/download?id=abc&export=download"


def test_drive_fallback_follows_the_confirmation_page_to_the_file(server, tmp_path):
    server.pages["drive"] = DRIVE_VIRUS_SCAN.replace("https://drive.usercontent.google.com/download",
                                                     f"{server.url}/{FILE}")
    part = str(tmp_path / f".partial-{FILE}")
    hub._download(f"{server.url}/drive", part, timeout=5, retries=2, progress=False, desc="", drive=True)
    assert open(part, "rb").read() == DATA
    assert [r[0] for r in server.requests] == ["drive", FILE]


# ---------------------------------------------------------------- tables, names, scripts


def test_every_registered_model_has_its_released_weights():
    import paddle_vits

    families = ("cait", "crossvit", "wavevit", "crossformer")  # not the test-only models other tests register
    names = [n for n in paddle_vits.list_models() if paddle_vits.get_model_info(n).family in families]
    assert len(names) == 31
    for name in names:
        entries = hub.list_weights(name)
        assert entries, name
        for w in entries:
            assert w.sources and w.trained_on, (name, w.tag)
            names = [s.file_name for s in w.sources]
            assert all(names) and all(s.key for s in w.sources if s.kind == "baidu"), (name, w.tag)


def test_official_sources_and_mirror_file_names():
    assert hub.get_weights("cait_xxs_24").primary.url == "https://dl.fbaipublicfiles.com/deit/XXS24_224.pth"
    assert hub.get_weights("cait_xxs24_224").sources[1].url == \
        "https://huggingface.co/timm/cait_xxs24_224.fb_dist_in1k/resolve/main/model.safetensors"
    cv = hub.get_weights("crossvit_15_dagger_408")
    assert cv.primary.file_name == "crossvit_15_dagger_384.pth"
    wv = hub.get_weights("wavevit_s")
    assert [s.kind for s in wv.sources] == ["drive", "baidu"] and wv.sources[1].key == "nets"
    assert hub.get_weights("crossformer_b").sources[1].key == "7md9"


def test_unknown_tag_lists_the_known_ones():
    with pytest.raises(WeightsError, match="use one of: fb_dist_in1k"):
        hub.get_weights("cait_xxs_24", "in22k")


def test_baidu_only_release_prints_link_key_and_where_to_put_the_file(release, tmp_path):
    w = Weights("baidu_only", (hub.baidu_source("https://pan.baidu.com/s/1abc", "wxyz", "x.pth"),))
    hub.add_weights(MODEL, w)
    try:
        with pytest.raises(WeightsError) as e:
            hub.resolve_pretrained(MODEL, "baidu_only", progress=False)
    finally:
        hub.remove_weights(MODEL, "baidu_only")
    msg = str(e.value)
    assert "cannot download" in msg
    assert f"Baidu Pan https://pan.baidu.com/s/1abc (access code wxyz) in a browser and save it as " \
           f"{_cache(tmp_path) / 'x.pth'}" in msg


def test_weights_arg_of_scripts_takes_a_path_or_a_tag(server, release, tmp_path):
    release(url=f"{server.url}/{FILE}")
    f = tmp_path / "mine.pdparams"
    f.write_bytes(b"x")
    assert hub.weights_file(MODEL, str(f)) == str(f)
    assert hub.weights_file(MODEL, TAG, progress=False).endswith(f"{MODEL}.{TAG}.pdparams")
    with pytest.raises(WeightsError, match="fb_dist_in1k, test_small"):
        hub.weights_file(MODEL, "nope.pth")


def test_weights_markdown_is_generated_from_the_registry():
    import paddle_vits

    table = hub.weights_markdown()
    rows = [r for r in table.splitlines()[2:] if r]
    assert len(rows) == sum(len(hub.list_weights(n)) for n in paddle_vits.list_models())
    assert "| `cait_xxs_24` | `fb_dist_in1k` | [dl.fbaipublicfiles.com](https://dl.fbaipublicfiles.com/deit/" \
           "XXS24_224.pth)" in table
    assert "Baidu Pan (code nkju)" in table
    readme = open(os.path.join(os.path.dirname(HERE), "README.md"), encoding="utf-8").read()
    assert table in readme, "README weights table is stale: python scripts/list_models.py --weights-markdown"


# ---------------------------------------------------------------- paddle.hub


REPO = os.path.dirname(HERE)


def test_paddle_hub_lists_every_model_with_its_docstring():
    import paddle_vits

    assert sorted(paddle.hub.list(REPO, source="local")) == paddle_vits.list_models()
    doc = paddle.hub.help(REPO, "crossvit_15_dagger_408", source="local")
    assert doc.startswith("crossvit_15_dagger_408 (crossvit): ") and "crossvit_15_dagger_384" in doc
    assert "``in1k``: ImageNet-1k, fine-tuned at 408/384 px" in doc


@pytest.mark.parametrize("name", ["cait_xxs_24", "crossvit_tiny_224", "wavevit_s", "crossformer_t"])
def test_paddle_hub_load_builds_every_family(name):
    import paddle_vits

    info = paddle_vits.get_model_info(name)
    kwargs = dict(info.test_kwargs)
    model = paddle.hub.load(REPO, name, source="local", num_classes=7, **kwargs)
    assert model.model_name == name
    size = kwargs.get("img_size", info.img_size)
    model.eval()
    with paddle.no_grad():
        assert model(paddle.randn([1, 3, size, size])).shape == [1, 7]


def test_paddle_hub_load_pretrained_downloads_through_the_mirror(server, release, monkeypatch):
    release()
    monkeypatch.setenv("PADDLE_VITS_MIRROR", server.url)
    model = paddle.hub.load(REPO, MODEL, source="local", pretrained=TAG, num_classes=10, **SMALL)
    np.testing.assert_allclose(*_fixture_logits(model), atol=1e-4)
    assert server.requests == [(FILE, None)]


# ---------------------------------------------------------------- scripts take a release by name

_RUNNER = """
import runpy, sys
sys.path.insert(0, {tests!r})
from test_scripts import TINY, _official, register_tiny_model
from paddle_vits import hub
from paddle_vits.hub import Weights, http_source
register_tiny_model()
hub.add_weights(TINY, Weights("test_tiny", (http_source({url!r}),)))
sys.argv = [{script!r}] + sys.argv[1:]
runpy.run_path({path!r}, run_name="__main__")
"""


def _run_script(tmp_path, url, script, *args):
    runner = tmp_path / f"run_{script}"
    runner.write_text(_RUNNER.format(tests=HERE, url=url, script=script,
                                     path=os.path.join(REPO, "scripts", script)))
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PADDLE_VITS_HOME=str(tmp_path / "home"),
               PYTHONPATH=REPO)
    env.pop("PADDLE_VITS_MIRROR", None)
    return subprocess.run([sys.executable, str(runner), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_export_script_takes_a_release_tag_and_downloads_it_once(server, tmp_path):
    if compat.export_unsupported():
        pytest.skip(compat.export_unsupported())
    from safetensors.numpy import save
    from test_scripts import TINY, _official

    server.files["tiny.safetensors"] = save(_official())
    url = f"{server.url}/tiny.safetensors"
    for weights in ("test_tiny", "pretrained"):  # the tag, then the default release: the same file
        proc = _run_script(tmp_path, url, "export_model.py", "--model", TINY, "--weights", weights,
                           "--out", tmp_path / weights)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (tmp_path / weights / "model.pdiparams").is_file()
    assert server.requests == [("tiny.safetensors", None)]
    assert (tmp_path / "home" / "weights" / TINY / f"{TINY}.test_tiny.pdparams").is_file()


@pytest.mark.parametrize("script,flag", [("export_model.py", "--weights"), ("train.py", "--pretrained")])
def test_scripts_name_the_releases_when_the_weights_are_neither_file_nor_tag(tmp_path, script, flag):
    if script == "export_model.py" and compat.export_unsupported():
        pytest.skip(compat.export_unsupported())
    from test_scripts import TINY

    args = ["--model", TINY, flag, "no_such.pth"]
    if script == "export_model.py":
        args += ["--out", tmp_path / "o"]
    else:  # train.py checks its data before the weights
        from _cifar_synth import write_cifar_tar

        write_cifar_tar(tmp_path / "c10.tar.gz", per_batch=4, test=4)
        args += ["--data", tmp_path / "c10.tar.gz", "--output", tmp_path / "run"]
    proc = _run_script(tmp_path, "http://127.0.0.1:9/x", script, *args)
    assert proc.returncode != 0
    assert "weights file not found: 'no_such.pth'" in proc.stderr and "(test_tiny)" in proc.stderr, proc.stderr


def test_a_real_release_entry_end_to_end_against_timm(server, tmp_path, monkeypatch):
    """crossvit_tiny_224's registered release, served under its official file name from the mirror,
    loaded with ``pretrained=True``: the logits equal timm's model holding the same (seeded) weights."""
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    monkeypatch.setenv("PADDLE_VITS_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    ref_model = timm.create_model("crossvit_tiny_240", pretrained=False).eval()
    buf = io.BytesIO()
    torch.save(ref_model.state_dict(), buf)
    name = hub.get_weights("crossvit_tiny_224").primary.file_name
    assert name == "crossvit_tiny_224.pth"
    server.files[name] = buf.getvalue()
    monkeypatch.setenv("PADDLE_VITS_MIRROR", server.url)
    model = create_model("crossvit_tiny_224", pretrained=True).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 240, 240)).astype(np.float32)
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(x)).numpy()
    with paddle.no_grad():
        np.testing.assert_allclose(model(paddle.to_tensor(x)).numpy(), ref, atol=1e-4)
    assert server.requests == [(name, None)]
