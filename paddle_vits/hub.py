"""Pretrained weights by name: official sources, download, verification and cache.

Every released checkpoint is described by a :class:`Weights` entry (registered
by the family files beside the model registrations, see :func:`register_weights`)
listing its sources, first the official one. :func:`resolve_pretrained` returns
the path of a verified, converted ``.pdparams`` file for a model and tag::

    path = resolve_pretrained("cait_xxs_24")            # default release
    path = resolve_pretrained("wavevit_s", "in1k")      # a named release

and :func:`paddle_vits.create_model` calls it for ``pretrained=True`` or
``pretrained="<tag>"``.

Cache layout (``$PADDLE_VITS_HOME``, default ``~/.cache/paddle_vits``)::

    <home>/weights/<model>/<file name>        the downloaded (or dropped-in) official file
    <home>/weights/<model>/<model>.<tag>.pdparams   its strict conversion, loaded from then on

A download goes to ``.partial-<file name>`` (resumed with an HTTP ``Range`` request
after an interruption), is checked (size, sha256 where known, and always a
strict conversion to the model) and only then renamed into place; a file that
fails a check is deleted, never cached. A file the user already has can be put
at ``<home>/weights/<model>/<file name>`` (under any of the source file names)
or passed to ``create_model`` by path. A per-release lock (``fcntl``, POSIX;
Windows has none) makes concurrent loads of the same weights by several
processes wait for one download instead of corrupting the cache.

Environment:

* ``PADDLE_VITS_HOME``: cache root.
* ``PADDLE_VITS_MIRROR=<base URL>``: download every file from
  ``<base URL>/<file name of the primary official source>`` instead of the
  official hosts (internal mirror, firewall-friendly host, tests).
* ``PADDLE_VITS_TIMEOUT`` (seconds, default 30): connect and read timeout; a
  server that sends nothing for that long is abandoned.
* ``PADDLE_VITS_RETRIES`` (default 3): attempts per URL, with exponential backoff.

Google Drive files are fetched by a small built-in client that follows Drive's
"can't scan for viruses" confirmation page (:func:`drive_confirm_url`), with the
same timeouts, retries and resumption; when Drive answers with something it
cannot read, ``gdown`` (``pip install gdown``, the ``drive`` extra) is tried.
Baidu Pan cannot be automated: the error prints the link, its access code and
where to put the file.

Weights tables of your own (private fine-tunes, tests) are added with
:func:`add_weights`; a tag and a path work alike in ``create_model`` and in the
scripts' ``--weights``/``--pretrained`` (:func:`weights_file`).
"""
import contextlib
import hashlib
import html
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Optional, Tuple

from tqdm import tqdm

from .utils.cli import UserError

__all__ = [
    "Source", "Weights", "WeightsError", "register_weights", "add_weights", "remove_weights", "list_weights",
    "get_weights", "is_weights_tag", "resolve_pretrained", "weights_file", "cache_dir_for", "http_source",
    "hf_source", "drive_source", "baidu_source", "drive_file_id", "drive_download_url", "drive_confirm_url",
    "weights_markdown",
]

DEFAULT_HOME = os.path.join("~", ".cache", "paddle_vits")
_CHUNK = 1 << 20
_BACKOFF_S = 1.0  # seconds before the second attempt of a URL; doubles with each attempt (at most 30 s)
_USER_AGENT = "paddle_vits-hub/1"


class WeightsError(UserError):
    """Pretrained weights cannot be found, downloaded or verified (the message says how to fix it)."""


@dataclass(frozen=True)
class Source:
    """One place a checkpoint file can be had.

    Attributes:
        url: Direct download URL, a Google Drive ``/file/d/<id>/view`` link,
            or a Baidu Pan share link.
        file_name: Name of the file (on the host, in the cache, on a mirror).
        size: Exact size in bytes, or ``None`` where not published.
        sha256: Hex digest, or ``None`` where not published.
        key: Access code of a Baidu Pan link.
    """

    url: str
    file_name: str
    size: Optional[int] = None
    sha256: Optional[str] = None
    key: Optional[str] = None

    @property
    def kind(self):
        host = urllib.parse.urlparse(self.url).netloc
        if host.endswith("drive.google.com") or host.endswith("drive.usercontent.google.com"):
            return "drive"
        if host.endswith("pan.baidu.com"):
            return "baidu"
        return "http"


@dataclass(frozen=True)
class Weights:
    """A released checkpoint of one model.

    Attributes:
        tag: Release name, unique per model (``"fb_dist_in1k"``, ``"in1k"``).
        sources: Where to get it, the official source first; the mirror
            serves ``sources[0].file_name``.
        trained_on: What it was trained on (data set, distillation, resolution).
        top1: ImageNet-1k top-1 (%) published for it (``None``: the model's ``top1``).
        model_kwargs: Arguments of ``create_model`` the checkpoint fits
            (empty for the released architecture; test entries use tiny configs).
    """

    tag: str
    sources: Tuple[Source, ...]
    trained_on: str = ""
    top1: Optional[float] = None
    model_kwargs: dict = field(default_factory=dict)

    @property
    def primary(self):
        return self.sources[0]


def http_source(url, size=None, sha256=None, file_name=None):
    """A plain HTTP(S) source; the file name defaults to the URL's last part."""
    name = file_name or os.path.basename(urllib.parse.urlparse(url).path)
    return Source(url, name, size, sha256)


def hf_source(repo_id, file="model.safetensors", size=None, sha256=None):
    """A Hugging Face hub file; cached as ``<repo name>.<ext>`` (all timm files are named alike)."""
    ext = file.rsplit(".", 1)[-1]
    return Source(f"https://huggingface.co/{repo_id}/resolve/main/{file}", f"{repo_id.split('/')[-1]}.{ext}",
                  size, sha256)


def drive_source(file_id, file_name, size=None, sha256=None):
    """A Google Drive file (the id of its ``/file/d/<id>/view`` link); ``file_name``: the name we store it under."""
    return Source(f"https://drive.google.com/file/d/{file_id}/view", file_name, size, sha256)


def baidu_source(url, key, file_name):
    """A Baidu Pan share link and its access code (manual download only)."""
    return Source(url, file_name, key=key)


_WEIGHTS = {}


def register_weights(table, replace=False):
    """Register weights tables: ``{model_name: (Weights, ...)}``, the first entry the default.

    Args:
        table: Mapping of registered model names to their releases.
        replace: Allow replacing the entries of a model already registered.
    """
    for name, entries in table.items():
        entries = tuple(entries)
        tags = [w.tag for w in entries]
        if len(set(tags)) != len(tags):
            raise ValueError(f"{name}: duplicate weights tags {tags}")
        if name in _WEIGHTS and not replace:
            raise ValueError(f"weights of {name!r} are registered twice")
        _WEIGHTS[name] = entries


def add_weights(model_name, weights):
    """Add a release (a :class:`Weights` with a new tag) to a model: private fine-tunes, a local mirror, tests."""
    name = _canonical(model_name)
    entries = _WEIGHTS.get(name, ())
    if any(w.tag == weights.tag for w in entries):
        raise ValueError(f"{name} already has weights tagged {weights.tag!r}")
    _WEIGHTS[name] = entries + (weights,)


def remove_weights(model_name, tag):
    """Remove the release ``tag`` of a model (the inverse of :func:`add_weights`)."""
    name = _canonical(model_name)
    _WEIGHTS[name] = tuple(w for w in _WEIGHTS.get(name, ()) if w.tag != tag)


def _canonical(model_name):
    from .registry import resolve_name

    return resolve_name(model_name)


def list_weights(model_name):
    """The :class:`Weights` entries of a model (default first); empty when none are released."""
    return _WEIGHTS.get(_canonical(model_name), ())


def is_weights_tag(model_name, tag):
    """Whether ``tag`` names a release of ``model_name``."""
    return any(w.tag == tag for w in list_weights(model_name))


def get_weights(model_name, tag=None):
    """The :class:`Weights` entry of ``model_name`` named ``tag`` (``None``: the default)."""
    name = _canonical(model_name)
    entries = _WEIGHTS.get(name, ())
    if not entries:
        raise WeightsError(f"no released weights are registered for {name}",
                           "pass a weights file by path "
                           "(`python scripts/list_models.py --weights-markdown` lists the releases)")
    if tag is None:
        return entries[0]
    for w in entries:
        if w.tag == tag:
            return w
    raise WeightsError(f"{name} has no weights tagged {tag!r}",
                       f"use one of: {', '.join(w.tag for w in entries)}, or pass a file path")


def _home():
    return os.path.expanduser(os.environ.get("PADDLE_VITS_HOME") or DEFAULT_HOME)


def cache_dir_for(model_name, cache_dir=None):
    """Folder holding the weights files of a model: ``<cache_dir or $PADDLE_VITS_HOME/weights>/<model>``."""
    return os.path.join(cache_dir or os.path.join(_home(), "weights"), _canonical(model_name))


def _env_number(name, default, cast):
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return cast(value)
    except ValueError:
        raise WeightsError(f"{name}={value!r} is not a number", f"set {name} to a number or unset it") from None


# -- Google Drive --------------------------------------------------------------------------------------------

_DRIVE_ID = re.compile(r"(?:/file/d/|[?&]id=)([A-Za-z0-9_-]{10,})")
_FORM = re.compile(r"<form[^>]*\bid=\"download-form\"[^>]*\baction=\"([^\"]+)\"[^>]*>(.*?)</form>", re.S | re.I)
_HIDDEN = re.compile(r"<input[^>]*\btype=\"hidden\"[^>]*>", re.I)
_ATTR = re.compile(r"\b(name|value)=\"([^\"]*)\"")
_CONFIRM_HREF = re.compile(r"href=\"(/uc\?export=download[^\"]*confirm=[^\"]+)\"")


def drive_file_id(url):
    """The file id in a Google Drive link (``/file/d/<id>/...`` or ``?id=<id>``)."""
    m = _DRIVE_ID.search(url)
    if not m:
        raise WeightsError(f"no Google Drive file id in {url}", "use a https://drive.google.com/file/d/<id>/view link")
    return m.group(1)


def drive_download_url(file_id):
    """First URL to request for a Drive file (small files come straight back)."""
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download"


def drive_confirm_url(page, base_url):
    """The real download URL behind a Drive HTML answer, or an error saying why there is none.

    Drive answers a large file with a page "Google Drive can't scan this file for
    viruses" holding a ``download-form`` (action plus hidden ``id``, ``export``,
    ``confirm``, ``uuid`` inputs); older pages link ``/uc?export=download&confirm=...``.
    A quota page or a sign-in page has neither.

    Args:
        page: The HTML text of the answer.
        base_url: The URL that returned it (to resolve relative links).
    """
    m = _FORM.search(page)
    if m:
        params = []
        for tag in _HIDDEN.findall(m.group(2)):
            attrs = dict(_ATTR.findall(tag))
            if "name" in attrs:
                params.append((attrs["name"], html.unescape(attrs.get("value", ""))))
        action = urllib.parse.urljoin(base_url, html.unescape(m.group(1)))
        return f"{action}?{urllib.parse.urlencode(params)}"
    m = _CONFIRM_HREF.search(page)
    if m:
        return urllib.parse.urljoin(base_url, html.unescape(m.group(1)))
    low = page.lower()
    if "quota" in low or "too many users" in low:
        raise WeightsError("Google Drive refuses the download: the file's download quota is exceeded",
                           "try again in 24 hours, or download it in a browser")
    if "accounts.google.com" in low or "sign in" in low:
        raise WeightsError("Google Drive asks to sign in for this file (it is not shared publicly)",
                           "download it in a browser while signed in")
    raise WeightsError("Google Drive answered with a page instead of the file",
                       "download it in a browser, or install gdown (pip install gdown)")


# -- HTTP download ------------------------------------------------------------------------------------------

class _Fatal(Exception):
    """A failure retrying the same URL cannot fix (404, a refused file)."""


class _Redirect(Exception):
    """Drive answered with its confirmation page; ``url`` is the real download."""

    def __init__(self, url):
        super().__init__(url)
        self.url = url


def _open(url, offset, timeout):
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _range_starts_at(content_range, offset):
    m = re.match(r"bytes (\d+)-", content_range or "")
    return bool(m) and int(m.group(1)) == offset


def _fetch_once(url, part, timeout, progress, desc, drive):
    """One attempt: append to ``part`` from where it ends. Returns the total size announced (or None)."""
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    try:
        resp = _open(url, offset, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # the partial file is as long as (or longer than) the file: start over
            os.remove(part)
            raise ConnectionError("partial file did not fit the server's; restarting") from None
        if e.code in (400, 401, 403, 404, 410):
            raise _Fatal(f"HTTP {e.code} {e.reason}") from None
        raise
    with resp:
        if drive and resp.headers.get_content_type() == "text/html":
            page = resp.read(2 << 20).decode("utf-8", "replace")
            raise _Redirect(drive_confirm_url(page, resp.geturl()))
        if offset and resp.status == 206 and not _range_starts_at(resp.headers.get("Content-Range"), offset):
            os.remove(part)
            raise ConnectionError("the server answered another byte range; restarting the file")
        if offset and resp.status != 206:
            offset = 0  # no Range support: the server sends the whole file
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with open(part, "ab" if offset else "wb") as f, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=desc, disable=not progress, leave=False) as bar:
            while True:
                chunk = resp.read1(_CHUNK)  # what has arrived: a timeout later keeps it for the resume
                if not chunk:
                    break
                f.write(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    if total is not None and os.path.getsize(part) < total:
        raise http.client.IncompleteRead(b"", total - os.path.getsize(part))
    return total


def _download(url, part, *, timeout, retries, progress, desc, drive=False):
    """Download ``url`` into ``part`` (resuming it), retrying transient failures with backoff.

    Raises:
        _Fatal: a failure that retrying does not fix, or every attempt failed.
    """
    last = None
    attempt = 0
    while attempt < retries:
        if attempt:
            time.sleep(min(2 ** (attempt - 1) * _BACKOFF_S, 30))
        try:
            return _fetch_once(url, part, timeout, progress, desc, drive)
        except _Redirect as r:  # Drive's confirmation page: once, to the real file
            url, drive = r.url, False
            continue
        except urllib.error.URLError as e:
            last = e
            if isinstance(e.reason, (socket.gaierror, ConnectionRefusedError)):
                break  # offline or nothing listening: retrying will not help
        except (OSError, http.client.HTTPException) as e:  # timeouts, resets, truncated bodies
            last = e
        attempt += 1
    raise _Fatal(_describe(last, timeout))


def _describe(exc, timeout):
    if isinstance(exc, (socket.timeout, TimeoutError)) or (
            isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, (socket.timeout, TimeoutError))):
        return f"no data for {timeout:g} s (timed out; PADDLE_VITS_TIMEOUT sets the limit)"
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect: {exc.reason}"
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection dropped before the end of the file"
    return f"{type(exc).__name__}: {exc}"


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify_file(path, source):
    """Size and sha256 of a downloaded or dropped-in file; a WeightsError naming the difference."""
    size = os.path.getsize(path)
    if source.size is not None and size != source.size:
        raise WeightsError(f"{path} has {size} bytes, expected {source.size}",
                           "the download is incomplete or another file: delete it and retry")
    if source.sha256 is not None:
        digest = _sha256(path)
        if digest != source.sha256.lower():
            raise WeightsError(f"{path} has sha256 {digest}, expected {source.sha256}",
                               "the file is corrupted or another release: delete it and retry")


def _convert(model_name, weights, src, out):
    """Strictly convert ``src`` to ``out`` (``.pdparams``); a WeightsError if it does not fit the model."""
    from .convert import CheckpointError, convert_checkpoint

    try:
        convert_checkpoint(model_name, src, out, **weights.model_kwargs)
    except CheckpointError as e:
        raise WeightsError(f"{src} is not a valid {model_name} checkpoint: {e}",
                           "delete it and download it again, or pass another file") from None


@contextlib.contextmanager
def _locked(path):
    """Exclusive lock on ``path`` (a lock file) for the duration; waits for other processes."""
    try:
        import fcntl
    except ImportError:  # Windows: no inter-process lock; the atomic renames still keep files whole
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _commit(part, path):
    """Rename the verified download into place (the partial file survives interruptions, so it is not
    an :func:`~paddle_vits.utils.io.atomic_path` temporary)."""
    os.replace(part, path)
    with contextlib.suppress(OSError):
        fd = os.open(os.path.dirname(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _mirror_url(mirror, source):
    return f"{mirror.rstrip('/')}/{urllib.parse.quote(source.file_name)}"


def _manual_help(weights, folder):
    """Where to put the file by hand: every source, with the exact cache path of each."""
    lines = []
    for i, s in enumerate(weights.sources):
        where = os.path.join(folder, s.file_name)
        if s.kind == "baidu":
            lines.append(f"{'or ' if i else ''}download Baidu Pan {s.url} (access code {s.key}) in a browser "
                         f"and save it as {where}")
        elif i == 0:
            lines.append(f"put the file {s.file_name} (from {s.url}) at {where}")
        else:
            lines.append(f"or the file {s.url} saved as {where}")
    lines.append("or set PADDLE_VITS_MIRROR to a host serving it, or pass a file path as pretrained")
    return "; ".join(lines)


def resolve_pretrained(model_name, tag=None, *, mirror=None, cache_dir=None, progress=True,
                       timeout=None, retries=None):
    """Path of a verified ``.pdparams`` for a released checkpoint, downloading and converting it once.

    Args:
        model_name: Registered model name or alias.
        tag: Release tag (``None``: the model's default release; see :func:`list_weights`).
        mirror: Base URL serving the files under their primary file names
            (default ``$PADDLE_VITS_MIRROR``; when set, no official host is contacted).
        cache_dir: Cache root instead of ``$PADDLE_VITS_HOME/weights``.
        progress: Show a download progress bar.
        timeout: Connect/read timeout in seconds (default ``$PADDLE_VITS_TIMEOUT`` or 30).
        retries: Attempts per URL (default ``$PADDLE_VITS_RETRIES`` or 3).

    Returns:
        str: path of the converted ``.pdparams`` file (Paddle names and layout).

    Raises:
        WeightsError: unknown tag, every source failed (the message lists the
            URLs tried and the exact path to put the file at), or the file
            fails its size/sha256 check or the strict conversion.
    """
    name = _canonical(model_name)
    weights = get_weights(name, tag)
    folder = cache_dir_for(name, cache_dir)
    converted = os.path.join(folder, f"{name}.{weights.tag}.pdparams")
    if os.path.isfile(converted):
        return converted
    mirror = mirror if mirror is not None else os.environ.get("PADDLE_VITS_MIRROR") or None
    timeout = timeout if timeout is not None else _env_number("PADDLE_VITS_TIMEOUT", 30.0, float)
    retries = max(1, retries if retries is not None else _env_number("PADDLE_VITS_RETRIES", 3, int))
    try:
        with _locked(os.path.join(folder, f".{name}.{weights.tag}.lock")):
            return _fill_cache(name, weights, folder, converted, mirror, timeout, retries, progress)
    except OSError as e:  # the cache folder: not writable, a file in the way, no space
        what = e.strerror or str(e)
        raise WeightsError(f"cannot write the weights cache: {what}: {e.filename or folder}",
                           "set PADDLE_VITS_HOME (or cache_dir=) to a writable folder with space") from e


def _fill_cache(name, weights, folder, converted, mirror, timeout, retries, progress):
    """The part of :func:`resolve_pretrained` under the lock: a cached file, else a download."""
    if os.path.isfile(converted):  # another process finished it while we waited
        return converted
    for source in weights.sources:  # a file already in the cache (downloaded or dropped in)
        path = os.path.join(folder, source.file_name)
        if os.path.isfile(path):
            _verify_file(path, source)
            _convert(name, weights, path, converted)
            return converted
    candidates = ([(_mirror_url(mirror, weights.primary), weights.primary)] if mirror else
                  [(s.url, s) for s in weights.sources if s.kind != "baidu"])
    failures = []
    for url, source in candidates:
        path = os.path.join(folder, source.file_name)
        part = os.path.join(folder, f".partial-{source.file_name}")  # keeps the extension the reader needs
        try:
            _fetch_source(url, source, part, timeout=timeout, retries=retries, progress=progress,
                          desc=source.file_name, use_gdown=not mirror)
            _verify_file(part, source)
            _convert(name, weights, part, converted)
        except _Fatal as e:  # the partial file stays: the next attempt resumes it
            failures.append(f"{url}: {e}")
            continue
        except WeightsError as e:  # refused (size, sha256, conversion, a Drive page): never cached
            with contextlib.suppress(OSError):
                os.remove(part)
            failures.append(f"{url}: refused: {e}")
            continue
        _commit(part, path)
        return converted
    raise WeightsError(f"cannot download the {weights.tag} weights of {name}: " + "; ".join(failures),
                       _manual_help(weights, folder))


def _fetch_source(url, source, part, *, timeout, retries, progress, desc, use_gdown):
    if not (source.kind == "drive" and use_gdown):
        _download(url, part, timeout=timeout, retries=retries, progress=progress, desc=desc)
        return
    # Google Drive: the built-in client first (it has timeouts and resumes), gdown when that fails.
    file_id = drive_file_id(source.url)
    try:
        _download(drive_download_url(file_id), part, timeout=timeout, retries=retries, progress=progress,
                  desc=desc, drive=True)
    except (_Fatal, WeightsError) as e:
        try:
            import gdown
        except ImportError:
            raise e from None
        with contextlib.suppress(OSError):
            os.remove(part)
        try:
            done = gdown.download(id=file_id, output=part, quiet=not progress)
        except Exception as g:  # gdown raises its own types (FileURLRetrievalError, requests errors)
            raise _Fatal(f"{e}; gdown: {g}") from None
        if done is None:
            raise _Fatal(f"{e}; gdown could not download it either") from None


def weights_file(model_name, spec, **kwargs):
    """What a script's ``--weights``/``--pretrained`` value names: a file path, or a release.

    ``spec`` is an existing file (returned as is), ``"pretrained"``/``"default"``
    (the default release) or a release tag of the model (see :func:`list_weights`).
    ``kwargs`` go to :func:`resolve_pretrained`.
    """
    spec = os.fspath(spec)
    if os.path.isfile(spec):
        return spec
    if spec in ("pretrained", "default"):
        return resolve_pretrained(model_name, None, **kwargs)
    if is_weights_tag(model_name, spec):
        return resolve_pretrained(model_name, spec, **kwargs)
    tags = ", ".join(w.tag for w in list_weights(model_name)) or "none released"
    raise WeightsError(f"weights file not found: {spec!r}",
                       f"give a .pdparams or official checkpoint path, 'pretrained', or a release tag of "
                       f"{_canonical(model_name)} ({tags})")


def weights_markdown():
    """A Markdown table of every registered release: model, tag, sources, size, trained on, top-1."""
    from .registry import get_model_info, list_models

    rows = ["| model | tag | source (official first) | file | size | trained on | top-1 |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in list_models():
        for w in list_weights(name):
            links = []
            for s in w.sources:
                host = {"drive": "Google Drive", "baidu": f"Baidu Pan (code {s.key})"}.get(
                    s.kind, urllib.parse.urlparse(s.url).netloc)
                links.append(f"[{host}]({s.url})")
            size = f"{w.primary.size / 2 ** 20:.1f} MiB" if w.primary.size else "not published"
            top1 = w.top1 if w.top1 is not None else get_model_info(name).top1
            top1 = f"{top1:.1f}" if top1 is not None else ""
            rows.append(f"| `{name}` | `{w.tag}` | {' / '.join(links)} | `{w.primary.file_name}` | {size} | "
                        f"{w.trained_on} | {top1} |")
    return "\n".join(rows) + "\n"
