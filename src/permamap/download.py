"""The one download helper: every byte permamap takes from the network goes through :func:`fetch`.

What it does, in order, for ``fetch(url, dest, dataset=..., settings=...)``:

1. **Mirror rewrite.** ``settings["mirrors"]`` maps URL prefixes to replacement prefixes (the
   longest matching prefix wins), so an institution, an HPC site or a test can serve the files.
   The manifest always records the canonical (unmirrored) URL.
2. **Reuse.** If ``dest`` exists and the manifest (a JSON lock file) records the same URL, size
   and sha256, the file is used as it is. A present file that is not in the manifest (copied in
   by hand, or a manifest that was deleted) is validated and adopted. A present file whose size
   or sha256 disagrees with the manifest is removed and downloaded again, once; if the new copy
   still disagrees the upstream file has changed and a :class:`~permamap.errors.DownloadError`
   says how to accept it.
3. **Offline switch.** With ``settings["offline"]`` a missing file is one error naming the
   dataset, the file, the URL and how to get it; nothing touches the network.
4. **Download** with ``requests``: status retries (429 and 5xx) with exponential backoff and
   ``Retry-After`` are urllib3's :class:`~urllib3.util.Retry`; timeouts, dropped connections and
   truncated bodies are retried here, resuming with an HTTP ``Range`` request (guarded by
   ``If-Range``) when the server answers 206 and restarting otherwise. Bytes go to a temporary
   file beside ``dest`` (``name.part.ext`` plus a small ``.json`` sidecar, so that a killed run
   resumes next time); a tqdm progress bar shows on a terminal.
5. **Verify and commit.** The temporary file is validated by opening it (the ``validate``
   callable, e.g. :func:`validate_raster`), hashed (pooch's :func:`pooch.file_hash`), checked
   against the manifest, then moved into place with :func:`os.replace`; the manifest is updated
   atomically under a file lock.

All of this runs under a lock per destination file (``flock``, beside the manifest): jobs that
need the same file at the same time (every CMIP6 delta job reads the WorldClim baseline, on a
laptop or as concurrent SLURM jobs on a shared file system with working ``flock``) take turns;
the first downloads it, the others find it in the manifest and reuse it.

Errors a user can act on are :class:`~permamap.errors.DownloadError` with one readable line:
404 (:class:`NotFound`, naming dataset and URL), 401/403 (naming the account or environment
variable needed), a corrupt or invalid file (removed, retried once, then reported), disk full,
retries exhausted. Nothing partial is left behind by any of them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import logging
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pooch
import requests
import urllib3
from requests.adapters import HTTPAdapter
from tqdm.auto import tqdm
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from permamap.errors import DownloadError, InputDataError

try:  # POSIX only; on Windows the manifest is updated without a lock.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SETTINGS",
    "NotFound",
    "apply_mirror",
    "fetch",
    "manifest_entry",
    "resolve_settings",
    "validate_raster",
]

#: Defaults of the ``download:`` config section (and of the ``settings`` dict of :func:`fetch`).
DEFAULT_SETTINGS: dict[str, Any] = {
    "cache_dir": "data",  # where raw downloads live (one sub-folder per dataset)
    "offline": False,  # never touch the network; a missing file is an error
    "mirrors": {},  # {url prefix: replacement prefix}
    "retries": 5,  # retries per request (status codes) and per download (dropped bodies)
    "timeout_s": 60.0,  # connect and read timeout of one request, seconds
    "backoff_s": 1.0,  # backoff factor: waits backoff_s * 2**(n-1) seconds between retries
    "max_backoff_s": 120.0,  # longest wait between two retries
    "max_retry_after_s": 600.0,  # longest Retry-After a server may ask for
    "manifest": None,  # JSON lock file; None -> <cache_dir>/manifest.json
    "progress": True,  # tqdm bar (only shown on a terminal) for downloads over progress_min_mb
    "progress_min_mb": 5.0,
    "auth": {},  # {url prefix: ENV_VAR}: send "Authorization: Bearer $ENV_VAR" to that host
}

_CHUNK = 1 << 20
_RETRY_STATUS = (429, 500, 502, 503, 504)
_USER_AGENT = "permamap (https://github.com/; scientific data retrieval)"


class NotFound(DownloadError):
    """The server answered 404/410: the file does not exist at that URL (for Copernicus DEM
    tiles this means an ocean tile)."""


class _Retryable(Exception):
    """A transient failure of one attempt (timeout, dropped connection, short body)."""


# --------------------------------------------------------------------------------------------
# settings, mirrors, manifest
# --------------------------------------------------------------------------------------------


def resolve_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return ``settings`` with defaults filled in and types checked (one readable error)."""
    out = dict(DEFAULT_SETTINGS)
    out.update({k: v for k, v in (settings or {}).items() if v is not None})
    unknown = sorted(set(out) - set(DEFAULT_SETTINGS))
    if unknown:
        raise DownloadError(
            f"download settings: unknown key(s) {unknown}; allowed: {sorted(DEFAULT_SETTINGS)}"
        )
    for key in ("mirrors", "auth"):
        if not isinstance(out[key], dict):
            raise DownloadError(f"download.{key} must be a mapping, got {out[key]!r}")
    if not isinstance(out["retries"], int) or out["retries"] < 0:
        raise DownloadError(f"download.retries must be an integer >= 0, got {out['retries']!r}")
    for key in ("timeout_s", "backoff_s", "max_backoff_s", "max_retry_after_s"):
        if not isinstance(out[key], (int, float)) or out[key] < 0:
            raise DownloadError(f"download.{key} must be a number >= 0, got {out[key]!r}")
    out["cache_dir"] = str(out["cache_dir"])
    if out["manifest"] is None:
        out["manifest"] = str(Path(out["cache_dir"]) / "manifest.json")
    return out


def apply_mirror(url: str, mirrors: Mapping[str, str]) -> str:
    """Rewrite ``url`` with the longest matching prefix of ``mirrors`` (unchanged if none)."""
    best = max((p for p in mirrors if url.startswith(p)), key=len, default=None)
    return url if best is None else mirrors[best] + url[len(best) :]


def _manifest_key(dest: Path, settings: Mapping[str, Any]) -> str:
    dest = Path(os.path.abspath(dest))
    cache = Path(os.path.abspath(settings["cache_dir"]))
    try:
        return dest.relative_to(cache).as_posix()
    except ValueError:
        return dest.as_posix()


@contextlib.contextmanager
def _file_lock(lock_path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``lock_path`` (created if needed), across processes."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _manifest_lock(path: Path):
    return _file_lock(Path(str(path) + ".lock"))


def _dest_lock(settings: Mapping[str, Any], key: str):
    """The lock of one destination file (its manifest ``key``): jobs of a workflow that need the
    same file at the same time (e.g. every CMIP6 delta job reads the WorldClim baseline) take
    turns, so one downloads it and the others find it done. The lock files sit beside the
    manifest (``.locks/``), not beside the data."""
    name = hashlib.sha1(key.encode()).hexdigest()[:20] + ".lock"
    return _file_lock(Path(settings["manifest"]).parent / ".locks" / name)


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DownloadError(
            f"download manifest {path} is not readable JSON ({exc}); fix or delete it "
            "(it is rebuilt from the files on the next download)"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("files", {}), dict):
        raise DownloadError(f"download manifest {path} has an unexpected layout; delete it")
    return data.get("files", {})


def _write_manifest_entry(settings: Mapping[str, Any], key: str, entry: dict | None) -> None:
    """Set (or remove, with ``entry=None``) one manifest entry, atomically and under a lock."""
    path = Path(settings["manifest"])
    with _manifest_lock(path):
        files = _read_manifest(path)
        if entry is None:
            files.pop(key, None)
        else:
            files[key] = entry
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": 1, "files": dict(sorted(files.items()))}, indent=1))
        os.replace(tmp, path)


def manifest_entry(dest: str | os.PathLike, settings: Mapping[str, Any]) -> dict | None:
    """The manifest's record of ``dest`` (``url``, ``size``, ``sha256``, ...) or None."""
    settings = resolve_settings(settings)
    return _read_manifest(Path(settings["manifest"])).get(_manifest_key(Path(dest), settings))


def _sha256(path: Path) -> str:
    return pooch.file_hash(str(path), alg="sha256")


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _gdal_paths(path: Path, member: str | None) -> list[str]:
    """Paths rasterio can open: the file itself, or the raster members of a zip archive."""
    if not zipfile.is_zipfile(path):
        return [str(path)]
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
    if member is not None:
        if member not in names:
            raise InputDataError(f"{path.name}: zip archive has no member {member!r}")
        names = [member]
    else:
        names = [n for n in names if n.lower().endswith((".tif", ".tiff", ".nc"))]
        if not names:
            raise InputDataError(f"{path.name}: zip archive holds no .tif/.nc raster")
    return [f"/vsizip/{{{path}}}/{n}" for n in names]


def validate_raster(
    path: str | os.PathLike,
    expect_crs: Any = None,
    bounds: tuple[float, float, float, float] | None = None,
    *,
    bounds_crs: Any = "EPSG:4326",
    dtype: str | tuple[str, ...] | None = None,
    count: int | None = None,
    member: str | None = None,
) -> None:
    """Open ``path`` with rasterio and check that it is a usable raster.

    Checks: it opens (a zip archive: each raster member, or ``member``), has a CRS (equal to
    ``expect_crs`` when given), has ``count`` bands and a dtype in ``dtype`` when given, and its
    extent overlaps ``bounds`` (west, south, east, north in ``bounds_crs``) when given.
    Raises :class:`~permamap.errors.InputDataError` with one readable line; GDAL's own message is
    reduced to its first line.
    """
    import rasterio
    from rasterio.crs import CRS
    from rasterio.warp import transform_bounds

    path = Path(path)
    name = path.name
    dtypes = (dtype,) if isinstance(dtype, str) else dtype
    for gpath in _gdal_paths(path, member):
        try:
            with rasterio.open(gpath) as src:
                if src.crs is None:
                    raise InputDataError(f"{name}: raster has no CRS")
                if expect_crs is not None and CRS.from_user_input(expect_crs) != src.crs:
                    raise InputDataError(
                        f"{name}: CRS is {src.crs.to_string()}, expected "
                        f"{CRS.from_user_input(expect_crs).to_string()}"
                    )
                if count is not None and src.count != count:
                    raise InputDataError(f"{name}: {src.count} band(s), expected {count}")
                if dtypes is not None and src.dtypes[0] not in dtypes:
                    raise InputDataError(f"{name}: dtype {src.dtypes[0]}, expected {dtypes}")
                if bounds is not None:
                    w, s, e, n = transform_bounds(bounds_crs, src.crs, *bounds, densify_pts=21)
                    b = src.bounds
                    if not (w < b.right and e > b.left and s < b.top and n > b.bottom):
                        raise InputDataError(
                            f"{name}: extent {tuple(round(v, 4) for v in b)} ({src.crs}) does "
                            f"not overlap the bbox {tuple(bounds)}"
                        )
        except rasterio.errors.RasterioError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputDataError(f"{name}: not a readable raster ({first})") from None


# --------------------------------------------------------------------------------------------
# the HTTP part
# --------------------------------------------------------------------------------------------


def _session(settings: Mapping[str, Any]) -> requests.Session:
    # urllib3 retries bad statuses (429/5xx, honouring Retry-After); connection errors, timeouts
    # and dropped bodies are retried (and resumed) by _download, so they are not retried twice.
    retry = Retry(
        total=None,
        connect=0,
        read=0,
        status=settings["retries"],
        other=0,
        allowed_methods=frozenset({"GET", "HEAD"}),
        status_forcelist=_RETRY_STATUS,
        backoff_factor=settings["backoff_s"],
        backoff_max=settings["max_backoff_s"],
        retry_after_max=int(settings["max_retry_after_s"]),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    sess = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    sess.mount("http://", adapter)
    sess.mount("https://", adapter)
    sess.headers["User-Agent"] = _USER_AGENT
    return sess


def _auth_headers(url: str, settings: Mapping[str, Any]) -> dict[str, str]:
    auth = settings.get("auth") or {}
    prefix = max((p for p in auth if url.startswith(p)), key=len, default=None)
    if prefix is None:
        return {}
    token = os.environ.get(auth[prefix])
    return {"Authorization": f"Bearer {token}"} if token else {}


def _write_chunk(fh: Any, chunk: bytes) -> None:
    """Write one chunk (a seam for tests that simulate a full disk)."""
    fh.write(chunk)


def _part_paths(dest: Path) -> tuple[Path, Path]:
    suffix = "".join(dest.suffixes[-1:])
    stem = dest.name[: len(dest.name) - len(suffix)] if suffix else dest.name
    part = dest.with_name(f"{stem}.part{suffix}")
    return part, part.with_name(part.name + ".json")


def _remove(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _disk_full_error(dataset: str, dest: Path, url: str) -> DownloadError:
    try:
        free = shutil.disk_usage(dest.parent).free / 1e6
        free_txt = f"{free:.0f} MB free"
    except OSError:
        free_txt = "free space unknown"
    return DownloadError(
        f"{dataset}: disk full while writing {dest} from {url} ({free_txt}); partial file "
        f"removed. Free space or point download.cache_dir at a larger disk"
    )


def _download(
    url: str,
    shown_url: str,
    dest: Path,
    part: Path,
    sidecar: Path,
    *,
    dataset: str,
    settings: Mapping[str, Any],
    auth_hint: str | None,
) -> None:
    """Fetch ``url`` into ``part`` (resuming from what is there); raise DownloadError."""
    timeout = float(settings["timeout_s"])
    sess = _session(settings)
    base_headers = _auth_headers(url, settings)
    # A part file from a killed run is resumed only if its sidecar names the same URL.
    validator: dict[str, str] = {}
    if part.exists():
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("url") == url:
            validator = {k: v for k, v in meta.items() if k in ("etag", "last_modified")}
        else:
            _remove(part, sidecar)
    best = part.stat().st_size if part.exists() else 0
    failures, attempts, last = 0, 0, ""
    while True:
        attempts += 1
        offset = part.stat().st_size if part.exists() else 0
        # identity: byte offsets for Range and sizes refer to the file itself, never to a
        # transparently compressed body.
        headers = {**base_headers, "Accept-Encoding": "identity"}
        if offset and validator:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = validator.get("etag") or validator.get("last_modified", "")
        try:
            try:
                resp = sess.get(url, headers=headers, stream=True, timeout=(timeout, timeout))
            except requests.exceptions.RetryError as exc:
                raise DownloadError(
                    f"{dataset}: {shown_url} kept failing after {settings['retries']} "
                    f"retries ({_reason(exc)}); try later or set download.mirrors"
                ) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise _Retryable(_reason(exc)) from None
            with resp:
                status = resp.status_code
                if status in (404, 410):
                    raise NotFound(f"{dataset}: {shown_url} does not exist (HTTP {status})")
                if status in (401, 403):
                    need = auth_hint or (
                        "credentials for this host: add them to ~/.netrc, or map the URL prefix "
                        "to an environment variable holding a token in download.auth"
                    )
                    raise DownloadError(
                        f"{dataset}: {shown_url} refused access (HTTP {status}); it needs {need}"
                    )
                if status == 416 and offset:  # our part is stale or complete: start over
                    _remove(part, sidecar)
                    validator = {}
                    raise _Retryable("HTTP 416 on resume")
                if status in _RETRY_STATUS:
                    raise DownloadError(
                        f"{dataset}: {shown_url} answered HTTP {status} after "
                        f"{settings['retries']} retries; the server is overloaded or down, try "
                        "later or set download.mirrors"
                    )
                if status not in (200, 206):
                    raise DownloadError(f"{dataset}: {shown_url} answered HTTP {status}")
                if status == 206:
                    start, total = _content_range(resp.headers.get("Content-Range", ""))
                    if start != offset:
                        _remove(part, sidecar)
                        raise _Retryable(f"server resumed at byte {start}, not {offset}")
                    mode = "ab"
                else:
                    if offset:
                        log.info("%s: server ignored the Range request; restarting", dataset)
                    offset, mode = 0, "wb"
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    validator = {}
                    if (etag := resp.headers.get("ETag")) and not etag.startswith("W/"):
                        validator["etag"] = etag
                    if lm := resp.headers.get("Last-Modified"):
                        validator["last_modified"] = lm
                    sidecar.write_text(json.dumps({"url": url, **validator}))
                _stream(resp, part, mode, offset, total, dataset, dest, shown_url, settings)
            return
        except _Retryable as exc:
            last = str(exc)
        size = part.stat().st_size if part.exists() else 0
        if size > best:  # progress resets the failure count (long downloads on flaky links)
            best, failures = size, 0
        else:
            failures += 1
        if failures > settings["retries"] or attempts >= 100:
            _remove(part, sidecar)
            raise DownloadError(
                f"{dataset}: download of {shown_url} failed after {attempts} attempt(s) "
                f"({last}); check the network, raise download.retries/timeout_s, or set "
                "download.mirrors"
            )
        wait = min(settings["max_backoff_s"], settings["backoff_s"] * 2 ** max(failures - 1, 0))
        log.warning("%s: %s (%s); retrying in %.2g s", dataset, shown_url, last, wait)
        time.sleep(wait)


def _reason(exc: BaseException) -> str:
    """A short description of a requests/urllib3 exception (no nested reprs)."""
    inner = exc
    while True:
        nxt = getattr(inner, "reason", None) or (inner.args[0] if inner.args else None)
        if isinstance(nxt, BaseException) and nxt is not inner:
            inner = nxt
            continue
        break
    if isinstance(inner, (ReadTimeoutError, requests.Timeout)) or "timed out" in str(inner):
        return "timed out"
    text = str(inner).split(":")[-1].strip() or type(inner).__name__
    return f"{type(inner).__name__}: {text}"[:200]


def _content_range(value: str) -> tuple[int, int | None]:
    """Parse ``bytes a-b/total`` -> (a, total or None)."""
    try:
        unit, rng = value.split(" ", 1)
        span, total = rng.split("/", 1)
        return int(span.split("-", 1)[0]), (None if total.strip() == "*" else int(total))
    except ValueError:
        return -1, None


def _stream(resp, part, mode, offset, total, dataset, dest, shown_url, settings) -> None:
    show = settings["progress"] and (total is None or total > settings["progress_min_mb"] * 1e6)
    bar = tqdm(
        total=total,
        initial=offset,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=dest.name,
        disable=None if show else True,  # None: shown on a terminal only
        leave=False,
        mininterval=1.0,
    )
    got = offset
    try:
        with open(part, mode) as fh:
            while True:
                # read1 returns what has arrived, so a dropped connection loses no bytes and
                # the resume starts exactly where the body broke off.
                chunk = resp.raw.read1(_CHUNK, decode_content=False)
                if not chunk:
                    break
                try:
                    _write_chunk(fh, chunk)
                except OSError as exc:
                    if exc.errno == errno.ENOSPC:
                        raise _disk_full_error(dataset, dest, shown_url) from None
                    raise
                got += len(chunk)
                bar.update(len(chunk))
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise _Retryable(f"connection lost after {got} bytes: {_reason(exc)}") from None
    finally:
        bar.close()
    if total is not None and got != total:
        raise _Retryable(f"short body: {got} of {total} bytes")


# --------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    dataset: str,
    settings: Mapping[str, Any] | None,
    validate: Callable[[Path], Any] | None = None,
    hint: str | None = None,
    auth_hint: str | None = None,
    missing_ok: bool = False,
) -> Path | None:
    """Download ``url`` to ``dest`` (once), verify it and return ``dest``.

    ``dataset`` names the data set in messages (e.g. ``"Copernicus GLO-30 DEM"``); ``settings`` is
    the ``download:`` config section (see :data:`DEFAULT_SETTINGS`); ``validate(path)`` must
    raise if the file is unusable (it is called on the temporary file, before the rename);
    ``hint`` tells an offline user how to get the file; ``auth_hint`` names the account or
    environment variable a 401/403 needs. With ``missing_ok`` a 404 returns None and is recorded
    in the manifest, so an offline run knows the file does not exist (Copernicus ocean tiles).
    """
    settings = resolve_settings(settings)
    dest = Path(dest)
    key = _manifest_key(dest, settings)
    with _dest_lock(settings, key):
        return _fetch(url, dest, key, dataset, settings, validate, hint, auth_hint, missing_ok)


def _fetch(url, dest, key, dataset, settings, validate, hint, auth_hint, missing_ok):
    """:func:`fetch` while holding the lock of ``dest``."""
    real_url = apply_mirror(url, settings["mirrors"])
    shown = url if real_url == url else f"{real_url} (mirror of {url})"
    manifest_path = Path(settings["manifest"])
    pinned = _read_manifest(manifest_path).get(key)
    if pinned is not None and pinned.get("url") != url:
        log.info("%s: %s now comes from %s; the old manifest entry is dropped", dataset, key, url)
        pinned = None
        _write_manifest_entry(settings, key, None)

    if pinned is not None and pinned.get("missing"):
        if missing_ok:
            return None
        pinned = None

    if dest.exists():
        if pinned is not None:
            size = dest.stat().st_size
            if size == pinned.get("size") and _sha256(dest) == pinned.get("sha256"):
                return dest
            log.warning("%s: %s does not match the manifest; removing it", dataset, dest)
            dest.unlink()
        else:
            try:
                if validate is not None:
                    validate(dest)
            except Exception as exc:  # noqa: BLE001 - any validation failure means "unusable"
                log.warning("%s: existing %s is unusable (%s); removing it", dataset, dest, exc)
                dest.unlink()
            else:
                _record(settings, key, dataset, url, dest, adopted=True)
                return dest

    if settings["offline"]:
        how = hint or "run the retrieve step once on a machine with internet, or copy the file"
        raise DownloadError(
            f"{dataset}: {dest} is missing and download.offline is set; get it from {url} "
            f"({how}) and put it at {dest}"
        )

    dest.parent.mkdir(parents=True, exist_ok=True)
    part, sidecar = _part_paths(dest)
    corrupt_retries = 1  # a corrupt, invalid or mismatching file is downloaded once more
    while True:
        try:
            _download(
                real_url,
                shown,
                dest,
                part,
                sidecar,
                dataset=dataset,
                settings=settings,
                auth_hint=auth_hint,
            )
        except NotFound:
            _remove(part, sidecar)
            if missing_ok:
                _write_manifest_entry(
                    settings, key, {"dataset": dataset, "url": url, "missing": True}
                )
                return None
            raise
        except DownloadError:
            _remove(part, sidecar)
            raise
        except OSError as exc:
            _remove(part, sidecar)
            if exc.errno == errno.ENOSPC:
                raise _disk_full_error(dataset, dest, shown) from None
            raise DownloadError(f"{dataset}: cannot write {part} ({exc.strerror})") from None
        # (KeyboardInterrupt and other kills keep the part file: the next run resumes it.)
        problem = None
        if validate is not None:
            try:
                validate(part)
            except Exception as exc:  # noqa: BLE001
                problem = f"the file is not valid ({exc})"
        if problem is None and pinned is not None:
            if part.stat().st_size != pinned.get("size") or _sha256(part) != pinned.get("sha256"):
                problem = (
                    f"its size/sha256 differ from the manifest {manifest_path} (the upstream "
                    f"file changed?); if the new file is right, delete the entry {key!r} there"
                )
        if problem is None:
            os.replace(part, dest)
            _remove(sidecar)
            if pinned is None:
                _record(settings, key, dataset, url, dest)
            return dest
        _remove(part, sidecar)
        if corrupt_retries == 0:
            raise DownloadError(f"{dataset}: {shown} was downloaded twice but {problem}; removed")
        corrupt_retries -= 1
        log.warning("%s: %s: %s; downloading it again", dataset, shown, problem)


def _record(settings, key, dataset, url, dest: Path, adopted: bool = False) -> None:
    entry = {
        "dataset": dataset,
        "url": url,
        "size": dest.stat().st_size,
        "sha256": _sha256(dest),
        "retrieved": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if adopted:
        entry["adopted"] = True  # found in the cache, not downloaded by permamap
    _write_manifest_entry(settings, key, entry)
