"""A local HTTP server on 127.0.0.1 with fault injection, and small fixture rasters laid out like
the real hosts (Copernicus DEM buckets, WorldClim tiles and zips, WorldClim CMIP6, CHELSA,
PANGAEA). Imported by tests/test_download.py and tests/test_sources.py; no internet needed.

The server listens on a random port of 127.0.0.1 only, serves threads as daemons, and stops by
itself after ``max_lifetime_s`` even if a test forgets to stop it.

Faults are queued per path and consumed one per request (a request with no queued fault is
served normally):

- ``("status", code)`` / ``("status", code, retry_after)``: an error status (with Retry-After);
- ``("drop", fraction)``: full Content-Length, then the connection is closed after that
  fraction of the body (a dropped connection mid-body);
- ``("truncate", n_missing)``: Content-Length larger than the body by ``n_missing`` bytes;
- ``("garbage",)``: a 200 with an HTML body instead of the file;
- ``("slow", seconds)``: wait before answering (longer than the client's timeout).
"""

from __future__ import annotations

import io
import re
import socket
import threading
import time
import zipfile
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: a close ends the body

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        fx = self.server.fixture
        path = self.path.split("?", 1)[0]
        with fx.lock:
            fx.requests.append((path, dict(self.headers)))
            fault = fx.faults[path].popleft() if fx.faults[path] else None
        body = fx.files.get(path)
        try:
            if fault and fault[0] == "slow":
                time.sleep(fault[1])
                fault = None
            if fault and fault[0] == "status":
                self.send_response(fault[1])
                if len(fault) > 2:
                    self.send_header("Retry-After", str(fault[2]))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if fault and fault[0] == "garbage":
                junk = b"<html><body>Service temporarily moved</body></html>" * 20
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(junk)))
                self.end_headers()
                self.wfile.write(junk)
                return
            start = 0
            rng = self.headers.get("Range")
            status = 200
            if rng and fx.support_range:
                m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
                if_range = self.headers.get("If-Range")
                if m and (if_range is None or if_range == fx.etag):
                    start = int(m.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
            payload = body[start:]
            declared = len(payload)
            if fault and fault[0] == "truncate":
                declared += fault[1]
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(declared))
            self.send_header("ETag", fx.etag)
            if fx.support_range:
                self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header(
                    "Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}"
                )
            self.end_headers()
            if head:
                return
            if fault and fault[0] == "drop":
                cut = max(1, int(len(payload) * fault[1]))
                self.wfile.write(payload[:cut])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class FixtureServer:
    """Serve ``files`` ({url path: bytes}) on http://127.0.0.1:<random port>."""

    def __init__(self, max_lifetime_s: float = 120.0):
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, deque] = defaultdict(deque)
        self.requests: list[tuple[str, dict]] = []
        self.support_range = True
        self.etag = '"v1"'
        self.lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fixture = self
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._timer = threading.Timer(max_lifetime_s, self.stop)
        self._timer.daemon = True
        self._stopped = False

    def start(self) -> FixtureServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._timer.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FixtureServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def add(self, path: str, data: bytes | Path) -> str:
        """Serve ``data`` at ``path`` and return its full URL."""
        if isinstance(data, Path):
            data = data.read_bytes()
        self.files[path] = data
        return self.url + path

    def fault(self, path: str, *faults: tuple) -> None:
        self.faults[path].extend(faults)

    def hits(self, path: str) -> list[dict]:
        """Headers of each request made for ``path``."""
        with self.lock:
            return [h for p, h in self.requests if p == path]


# --------------------------------------------------------------------------------------------
# fixture rasters (small, but with the real layouts, CRSs and naming)
# --------------------------------------------------------------------------------------------


def dem_value(lon, lat):
    """The analytic surface in the Copernicus fixture tiles (m): a tilted plane."""
    return 3000.0 + 100.0 * (np.asarray(lon) - 101.0) + 50.0 * (np.asarray(lat) - 36.0)


def write_tif(path: Path, data: np.ndarray, transform, crs="EPSG:4326", nodata=None, **tags):
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    profile = dict(
        driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
        dtype=data.dtype, crs=crs, transform=transform, nodata=nodata, compress="deflate",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**tags)
    return path


def copernicus_tile(tmp: Path, lat: int, lon: int, product: str = "GLO-30", n: int = 60) -> Path:
    """A 1x1 degree tile like the real ones: ``n`` pixels a degree, pixel centres on the
    integer degrees (so the extent is shifted by half a pixel), float32 heights."""
    code = "10" if product == "GLO-30" else "30"
    ns, ew = ("N" if lat >= 0 else "S"), ("E" if lon >= 0 else "W")
    stem = f"Copernicus_DSM_COG_{code}_{ns}{abs(lat):02d}_00_{ew}{abs(lon):03d}_00_DEM"
    res = 1.0 / n
    x0, y0 = lon - res / 2, lat + 1 - res / 2 + res  # top-left corner: (lat+1) + half a pixel
    cols = (np.arange(n) + 0.5) * res + x0
    rows = y0 - (np.arange(n) + 0.5) * res
    lon2, lat2 = np.meshgrid(cols, rows)
    data = dem_value(lon2, lat2).astype("float32")
    return write_tif(tmp / f"{stem}.tif", data, from_origin(x0, y0, res, res))


def tavg_value(month, lon, lat):
    """Monthly mean air temperature in the WorldClim fixtures (C)."""
    return (
        -10.0
        + 20.0 * np.sin(np.pi * (np.asarray(month) - 1) / 11.0)
        - 0.5 * (np.asarray(lat) - 36.0)
        + 0.1 * (np.asarray(lon) - 100.0)
    )


def _grid(west, north, res, width, height):
    cols = west + (np.arange(width) + 0.5) * res
    rows = north - (np.arange(height) + 0.5) * res
    return np.meshgrid(cols, rows)


def worldclim_tile(tmp: Path, tile_id: int, var: str, res: float = 0.25) -> Path:
    """A 30x30 degree WorldClim tile (``tile_{id}_wc2.1_30s_{var}.tif``), coarse for speed."""
    row, col = divmod(tile_id - 1, 12)
    west, north = -180 + 30 * col, 90 - 30 * row
    n = int(round(30 / res))
    lon, lat = _grid(west, north, res, n, n)
    if var == "elev":
        data = (2000.0 + 10 * (lat - 30)).astype("float32")
    else:
        data = np.stack([tavg_value(m, lon, lat) for m in range(1, 13)]).astype("float32")
    return write_tif(
        tmp / f"tile_{tile_id}_wc2.1_30s_{var}.tif", data, from_origin(west, north, res, res),
        nodata=-3.4e38,
    )


REGION = (90.0, 45.0, 120.0, 30.0)  # west, north, east, south of the regional "global" fixtures


def worldclim_zip(tmp: Path, res_label: str, var: str, res: float = 1 / 6) -> Path:
    """A WorldClim 2.1 ``base/wc2.1_{res}_{var}.zip`` with one GeoTIFF a month (or ``elev``),
    over a regional extent (not global, to keep it small)."""
    west, north, east, south = REGION
    w, h = int(round((east - west) / res)), int(round((north - south) / res))
    lon, lat = _grid(west, north, res, w, h)
    tr = from_origin(west, north, res, res)
    zpath = tmp / f"wc2.1_{res_label}_{var}.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        members = (
            [(f"wc2.1_{res_label}_elev.tif", (2000.0 + 10 * (lat - 30)).astype("float32"))]
            if var == "elev"
            else [
                (f"wc2.1_{res_label}_{var}_{m:02d}.tif", tavg_value(m, lon, lat).astype("float32"))
                for m in range(1, 13)
            ]
        )
        for name, data in members:
            buf = tmp / f"_member_{name}"
            write_tif(buf, data, tr, nodata=-3.4e38)
            zf.write(buf, name)
            buf.unlink()
    return zpath


def cmip6_file(tmp: Path, res_label: str, var: str, gcm: str, ssp: str, period: str,
               delta: np.ndarray, res: float = 1 / 6) -> Path:
    """A WorldClim CMIP6 12-band ``wc2.1_{res}_{var}_{gcm}_{ssp}_{period}.tif``.

    tmin = tavg + delta - 4 and tmax = tavg + delta + 4, so (tmin+tmax)/2 - tavg = delta[m]."""
    west, north, east, south = REGION
    w, h = int(round((east - west) / res)), int(round((north - south) / res))
    lon, lat = _grid(west, north, res, w, h)
    sign = -4.0 if var == "tmin" else 4.0
    data = np.stack(
        [tavg_value(m, lon, lat) + delta[m - 1] + sign for m in range(1, 13)]
    ).astype("float32")
    name = f"wc2.1_{res_label}_{var}_{gcm}_{ssp}_{period}.tif"
    return write_tif(tmp / name, data, from_origin(west, north, res, res), nodata=-3.4e38)


def chelsa_file(tmp: Path, month: int, kind: str = "legacy", res: float = 0.05) -> Path:
    """A CHELSA V2.1 ``CHELSA_tas_{MM}_1981-2010_V.2.1.tif`` (uint16) over the fixture region.

    ``legacy``: stored 10*(T+273.15), scale 0.1, offset -273.15 in the metadata (C);
    ``current``: same values, scale 0.1, offset 0, unit K (the unil delivery);
    ``bare``: same values, no scale/offset metadata at all."""
    west, north, east, south = 99.0, 39.0, 104.0, 35.0
    w, h = int(round((east - west) / res)), int(round((north - south) / res))
    lon, lat = _grid(west, north, res, w, h)
    raw = np.round((tavg_value(month, lon, lat) + 273.15) * 10).astype("uint16")
    path = tmp / f"CHELSA_tas_{month:02d}_1981-2010_V.2.1.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint16",
        crs="EPSG:4326", transform=from_origin(west, north, res, res), nodata=65535,
    ) as dst:
        dst.write(raw, 1)
        if kind == "legacy":
            dst.scales, dst.offsets = (0.1,), (-273.15,)
        elif kind == "current":
            dst.scales, dst.offsets = (0.1,), (0.0,)
            dst.units = ("K",)
    return path


def obu_value(x, y):
    """MAGT (C) in the Obu fixture: linear in EPSG:3995 metres, so bilinear is exact."""
    return 1.0 + 2e-5 * (np.asarray(x) - 6.1e6) - 3e-5 * (np.asarray(y) - 1.28e6)


def obu_zip(tmp: Path, name: str = "UiO_PEX_MAGTM_5.0_20181127_2000_2016_NH",
            classes: bool = False, with_crs: bool = True) -> Path:
    """A PANGAEA-like zip holding ``{name}/{name}.tif`` in EPSG:3995 (1 km pixels) covering
    the Xining region. ``classes``: a uint8 zone raster (codes 1 and 4) instead of MAGT."""
    from rasterio.warp import transform_bounds

    left, bottom, right, top = transform_bounds("EPSG:4326", "EPSG:3995", 98, 34, 105, 40)
    res = 1000.0
    x0, y1 = np.floor(left / res) * res - res, np.ceil(top / res) * res + res
    w = int((np.ceil(right / res) * res + res - x0) / res)
    h = int((y1 - (np.floor(bottom / res) * res - res)) / res)
    xs = x0 + (np.arange(w) + 0.5) * res
    ys = y1 - (np.arange(h) + 0.5) * res
    x2, y2 = np.meshgrid(xs, ys)
    if classes:
        data = np.where(x2 < np.median(xs), 1, 4).astype("uint8")
        nodata = 0
    else:
        data = obu_value(x2, y2).astype("float32")
        nodata = -9999.0
    tif = write_tif(tmp / f"{name}.tif", data, from_origin(x0, y1, res, res),
                    crs="EPSG:3995" if with_crs else None, nodata=nodata)
    zpath = tmp / f"{name}.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(tif, f"{name}/{name}.tif")
        zf.writestr(f"{name}/readme.txt", "fixture")
    tif.unlink()
    return zpath


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    return buf.getvalue()
