"""permamap.download against a local fault-injecting HTTP server (no internet)."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import from_origin

from permamap import download
from permamap.download import NotFound, apply_mirror, fetch, manifest_entry, validate_raster
from permamap.errors import DownloadError, InputDataError
from tests.http_fixtures import FixtureServer, write_tif


@pytest.fixture
def server():
    with FixtureServer() as srv:
        yield srv


@pytest.fixture
def settings(tmp_path):
    return {
        "cache_dir": str(tmp_path / "cache"),
        "retries": 3,
        "timeout_s": 2.0,
        "backoff_s": 0.01,
        "progress": False,
    }


@pytest.fixture
def tif_bytes(tmp_path):
    data = np.arange(64 * 64, dtype="float32").reshape(64, 64)
    path = write_tif(tmp_path / "src.tif", data, from_origin(101, 37, 0.01, 0.01))
    return path.read_bytes()


def leftovers(cache: Path, keep=()) -> list[str]:
    """Files in the cache other than the manifest, the locks and ``keep``."""
    skip = {"manifest.json", "manifest.json.lock", *keep}
    return sorted(
        p.name
        for p in cache.rglob("*")
        if p.is_file() and p.name not in skip and p.parent.name != ".locks"
    )


def val(path):
    validate_raster(path, expect_crs="EPSG:4326", bounds=(101.1, 36.5, 101.2, 36.6))


def test_download_records_manifest_and_reuses(server, settings, tif_bytes):
    url = server.add("/d/a.tif", tif_bytes)
    dest = Path(settings["cache_dir"]) / "ds" / "a.tif"
    out = fetch(url, dest, dataset="Test", settings=settings, validate=val)
    assert out == dest and dest.read_bytes() == tif_bytes
    entry = manifest_entry(dest, settings)
    assert entry["url"] == url and entry["size"] == len(tif_bytes)
    assert len(entry["sha256"]) == 64
    assert json.loads((Path(settings["cache_dir"]) / "manifest.json").read_text())["files"]
    fetch(url, dest, dataset="Test", settings=settings, validate=val)
    assert len(server.hits("/d/a.tif")) == 1  # reused, not downloaded again
    assert leftovers(Path(settings["cache_dir"]), keep={"a.tif"}) == []


def test_concurrent_jobs_download_a_shared_file_once(server, settings, tif_bytes):
    """Two processes (e.g. two CMIP6 delta jobs, both reading the WorldClim baseline) fetch the
    same file at once: the first downloads it (its answer is slowed down so the two overlap),
    the second waits for the file's lock and reuses it; one request, both get the file."""
    url = server.add("/d/shared.tif", tif_bytes)
    server.fault("/d/shared.tif", ("slow", 1.0))
    dest = Path(settings["cache_dir"]) / "ds" / "shared.tif"
    code = (
        "import json, sys\n"
        "from permamap.download import fetch, validate_raster\n"
        "fetch(sys.argv[1], sys.argv[2], dataset='Test', settings=json.loads(sys.argv[3]),\n"
        "      validate=validate_raster)\n"
    )
    args = [sys.executable, "-c", code, url, str(dest), json.dumps(settings)]
    procs = [subprocess.Popen(args, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert len(server.hits("/d/shared.tif")) == 1
    assert dest.read_bytes() == tif_bytes
    assert leftovers(Path(settings["cache_dir"]), keep={"shared.tif"}) == []


def test_mirror_rewrite_and_canonical_url_in_manifest(server, settings, tif_bytes):
    server.add("/mirror/data/a.tif", tif_bytes)
    canonical = "https://upstream.invalid/data/a.tif"
    settings["mirrors"] = {
        "https://upstream.invalid/": server.url + "/mirror/",
        "https://other.invalid/": "http://127.0.0.1:9/",
    }
    dest = Path(settings["cache_dir"]) / "a.tif"
    fetch(canonical, dest, dataset="Test", settings=settings)
    assert dest.read_bytes() == tif_bytes
    assert manifest_entry(dest, settings)["url"] == canonical


def test_apply_mirror_longest_prefix():
    mirrors = {"https://h/": "http://m1/", "https://h/a/": "http://m2/"}
    assert apply_mirror("https://h/a/x", mirrors) == "http://m2/x"
    assert apply_mirror("https://h/b/x", mirrors) == "http://m1/b/x"
    assert apply_mirror("https://z/x", mirrors) == "https://z/x"


def test_dropped_connection_resumes_with_range(server, settings, tif_bytes):
    url = server.add("/a.tif", tif_bytes)
    server.fault("/a.tif", ("drop", 0.5))
    dest = Path(settings["cache_dir"]) / "a.tif"
    fetch(url, dest, dataset="Test", settings=settings, validate=val)
    assert dest.read_bytes() == tif_bytes
    hits = server.hits("/a.tif")
    assert len(hits) == 2
    assert "Range" not in hits[0]
    assert hits[1]["Range"] == f"bytes={len(tif_bytes) // 2}-"
    assert hits[1]["If-Range"] == server.etag
    assert leftovers(Path(settings["cache_dir"]), keep={"a.tif"}) == []


def test_dropped_connection_restarts_without_range_support(server, settings, tif_bytes):
    server.support_range = False
    url = server.add("/a.tif", tif_bytes)
    server.fault("/a.tif", ("drop", 0.3), ("drop", 0.6))
    dest = Path(settings["cache_dir"]) / "a.tif"
    fetch(url, dest, dataset="Test", settings=settings, validate=val)
    assert dest.read_bytes() == tif_bytes
    assert len(server.hits("/a.tif")) == 3


def test_changed_upstream_etag_restarts_instead_of_splicing(server, settings, tif_bytes):
    url = server.add("/a.tif", tif_bytes)
    server.fault("/a.tif", ("drop", 0.5))
    dest = Path(settings["cache_dir"]) / "a.tif"
    original_get = download.requests.Session.get

    new = bytes(reversed(tif_bytes))

    def get(self, *a, **kw):  # the file changes on the server between the two attempts
        if kw.get("headers", {}).get("Range"):
            server.etag = '"v2"'
            server.files["/a.tif"] = new
        return original_get(self, *a, **kw)

    download.requests.Session.get = get
    try:
        fetch(url, dest, dataset="Test", settings=settings)
    finally:
        download.requests.Session.get = original_get
    assert dest.read_bytes() == new  # If-Range mismatch -> full 200 body, not a splice


def test_500_then_success(server, settings, tif_bytes):
    url = server.add("/a.tif", tif_bytes)
    server.fault("/a.tif", ("status", 500), ("status", 503))
    dest = Path(settings["cache_dir"]) / "a.tif"
    fetch(url, dest, dataset="Test", settings=settings)
    assert dest.read_bytes() == tif_bytes
    assert len(server.hits("/a.tif")) == 3


def test_5xx_forever_is_a_clear_error(server, settings, tif_bytes):
    url = server.add("/a.tif", tif_bytes)
    server.fault("/a.tif", *[("status", 502)] * 10)
    dest = Path(settings["cache_dir"]) / "a.tif"
    with pytest.raises(DownloadError, match=r"Test: .*/a.tif answered HTTP 502 after 3 retries"):
        fetch(url, dest, dataset="Test", settings=settings)
    assert leftovers(Path(settings["cache_dir"])) == []


def test_429_honours_retry_after(server, settings, tif_bytes):
    url = server.add("/a.tif", tif_bytes)
    server.fault("/a.tif", ("status", 429, 1))
    dest = Path(settings["cache_dir"]) / "a.tif"
    t0 = time.monotonic()
    fetch(url, dest, dataset="Test", settings=settings)
    assert time.monotonic() - t0 >= 0.9  # backoff_s is 0.01: only Retry-After explains the wait
    assert dest.read_bytes() == tif_bytes


def test_404_names_dataset_and_url(server, settings):
    dest = Path(settings["cache_dir"]) / "x.tif"
    url = server.url + "/nope/x.tif"
    with pytest.raises(NotFound) as info:
        fetch(url, dest, dataset="Copernicus GLO-30 DEM", settings=settings)
    msg = str(info.value)
    assert "Copernicus GLO-30 DEM" in msg and url in msg and "404" in msg
    assert "\n" not in msg
    assert isinstance(info.value, DownloadError)
    assert leftovers(Path(settings["cache_dir"])) == []


def test_404_missing_ok_is_recorded_for_offline_runs(server, settings):
    dest = Path(settings["cache_dir"]) / "ocean.tif"
    url = server.url + "/ocean.tif"
    assert fetch(url, dest, dataset="T", settings=settings, missing_ok=True) is None
    assert manifest_entry(dest, settings)["missing"] is True
    offline = {**settings, "offline": True}
    assert fetch(url, dest, dataset="T", settings=offline, missing_ok=True) is None
    assert len(server.hits("/ocean.tif")) == 1


def test_auth_error_names_what_is_needed(server, settings):
    server.add("/a.tif", b"x")
    server.fault("/a.tif", ("status", 401))
    dest = Path(settings["cache_dir"]) / "a.tif"
    with pytest.raises(DownloadError, match=r"HTTP 401.*needs a CDS account \(CDSAPI_KEY\)"):
        fetch(
            server.url + "/a.tif",
            dest,
            dataset="ERA5",
            settings=settings,
            auth_hint="a CDS account (CDSAPI_KEY)",
        )
    server.fault("/a.tif", ("status", 403))
    with pytest.raises(DownloadError, match=r"HTTP 403.*~/.netrc.*download.auth"):
        fetch(server.url + "/a.tif", dest, dataset="X", settings=settings)
    assert leftovers(Path(settings["cache_dir"])) == []


def test_auth_token_from_environment(server, settings, monkeypatch, tif_bytes):
    url = server.add("/a.tif", tif_bytes)
    monkeypatch.setenv("PERMAMAP_TEST_TOKEN", "s3cret")
    settings["auth"] = {server.url + "/": "PERMAMAP_TEST_TOKEN"}
    fetch(url, Path(settings["cache_dir"]) / "a.tif", dataset="T", settings=settings)
    assert server.hits("/a.tif")[0]["Authorization"] == "Bearer s3cret"


def test_truncated_body_once_recovers(server, settings, tif_bytes):
    url = server.add("/a.tif", tif_bytes)
    server.fault("/a.tif", ("truncate", 1000))
    dest = Path(settings["cache_dir"]) / "a.tif"
    fetch(url, dest, dataset="T", settings=settings, validate=val)
    assert dest.read_bytes() == tif_bytes


def test_truncated_body_always_ends_in_error(server, settings, tif_bytes):
    url = server.add("/a.tif", tif_bytes)
    server.support_range = False
    server.fault("/a.tif", *[("truncate", 1000)] * 20)
    dest = Path(settings["cache_dir"]) / "a.tif"
    with pytest.raises(DownloadError, match=r"failed after \d+ attempt\(s\) \(.*connection lost"):
        fetch(url, dest, dataset="T", settings=settings)
    assert not dest.exists()
    assert leftovers(Path(settings["cache_dir"])) == []


def test_non_geotiff_body_is_retried_then_accepted(server, settings, tif_bytes):
    url = server.add("/a.tif", tif_bytes)
    server.fault("/a.tif", ("garbage",))
    dest = Path(settings["cache_dir"]) / "a.tif"
    fetch(url, dest, dataset="T", settings=settings, validate=val)
    assert dest.read_bytes() == tif_bytes
    assert len(server.hits("/a.tif")) == 2


def test_non_geotiff_body_twice_is_an_error_and_removed(server, settings, tif_bytes):
    url = server.add("/a.tif", tif_bytes)
    server.fault("/a.tif", ("garbage",), ("garbage",))
    dest = Path(settings["cache_dir"]) / "a.tif"
    with pytest.raises(DownloadError) as info:
        fetch(url, dest, dataset="WorldClim", settings=settings, validate=val)
    msg = str(info.value)
    assert "WorldClim" in msg and "not valid" in msg and "not a readable raster" in msg
    assert "\n" not in msg and "Traceback" not in msg
    assert leftovers(Path(settings["cache_dir"])) == []


def test_slow_server_once_recovers(server, settings, tif_bytes):
    url = server.add("/a.tif", tif_bytes)
    server.fault("/a.tif", ("slow", 1.0))
    settings["timeout_s"] = 0.3
    dest = Path(settings["cache_dir"]) / "a.tif"
    fetch(url, dest, dataset="T", settings=settings)
    assert dest.read_bytes() == tif_bytes


def test_slow_server_always_times_out(server, settings, tif_bytes):
    url = server.add("/a.tif", tif_bytes)
    server.fault("/a.tif", *[("slow", 0.8)] * 5)
    settings.update(timeout_s=0.2, retries=2)
    dest = Path(settings["cache_dir"]) / "a.tif"
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match=r"T: .*a.tif failed after 3 attempt\(s\) \(timed out"):
        fetch(url, dest, dataset="T", settings=settings)
    assert time.monotonic() - t0 < 5
    assert leftovers(Path(settings["cache_dir"])) == []


def test_disk_full_is_clear_and_leaves_nothing(server, settings, tif_bytes, monkeypatch):
    url = server.add("/a.tif", tif_bytes)

    def full(fh, chunk):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download, "_write_chunk", full)
    dest = Path(settings["cache_dir"]) / "a.tif"
    with pytest.raises(DownloadError, match=r"T: disk full while writing .*a.tif.*removed"):
        fetch(url, dest, dataset="T", settings=settings)
    assert leftovers(Path(settings["cache_dir"])) == []


def test_manifest_mismatch_redownloads(server, settings, tif_bytes):
    url = server.add("/a.tif", tif_bytes)
    dest = Path(settings["cache_dir"]) / "a.tif"
    fetch(url, dest, dataset="T", settings=settings, validate=val)
    data = bytearray(dest.read_bytes())
    data[-1] ^= 0xFF  # same size, different content: only the sha256 can tell
    dest.write_bytes(bytes(data))
    fetch(url, dest, dataset="T", settings=settings, validate=val)
    assert dest.read_bytes() == tif_bytes
    assert len(server.hits("/a.tif")) == 2


def test_manifest_mismatch_after_redownload_is_an_error(server, settings, tif_bytes):
    url = server.add("/a.tif", tif_bytes)
    dest = Path(settings["cache_dir"]) / "a.tif"
    fetch(url, dest, dataset="T", settings=settings)
    dest.unlink()
    server.add("/a.tif", tif_bytes + b"changed upstream")
    with pytest.raises(DownloadError, match=r"downloaded twice but .*differ from the manifest"):
        fetch(url, dest, dataset="T", settings=settings)
    assert len(server.hits("/a.tif")) == 3
    assert leftovers(Path(settings["cache_dir"])) == []


def test_offline_missing_file_is_one_clear_error(server, settings):
    url = server.url + "/a.tif"
    settings["offline"] = True
    dest = Path(settings["cache_dir"]) / "a.tif"
    with pytest.raises(DownloadError) as info:
        fetch(
            url,
            dest,
            dataset="CHELSA tas",
            settings=settings,
            hint="run `snakemake retrieve_climate` with internet",
        )
    msg = str(info.value)
    for part in ("CHELSA tas", str(dest), url, "offline", "retrieve_climate"):
        assert part in msg
    assert server.hits("/a.tif") == []


def test_offline_uses_verified_file(server, settings, tif_bytes):
    url = server.add("/a.tif", tif_bytes)
    dest = Path(settings["cache_dir"]) / "a.tif"
    fetch(url, dest, dataset="T", settings=settings)
    server.stop()
    assert fetch(url, dest, dataset="T", settings={**settings, "offline": True}) == dest


def test_existing_unrecorded_file_is_validated_and_adopted(server, settings, tif_bytes):
    dest = Path(settings["cache_dir"]) / "a.tif"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(tif_bytes)
    url = server.url + "/a.tif"  # not served: adoption must not touch the network
    fetch(url, dest, dataset="T", settings={**settings, "offline": True}, validate=val)
    assert manifest_entry(dest, settings)["adopted"] is True
    dest.write_bytes(b"junk")
    bad = Path(settings["cache_dir"]) / "b.tif"
    bad.write_bytes(b"junk")
    server.add("/b.tif", tif_bytes)
    fetch(server.url + "/b.tif", bad, dataset="T", settings=settings, validate=val)
    assert bad.read_bytes() == tif_bytes


def test_resume_after_a_killed_run(server, settings, tif_bytes):
    url = server.add("/a.tif", tif_bytes)
    dest = Path(settings["cache_dir"]) / "a.tif"
    dest.parent.mkdir(parents=True)
    part = dest.with_name("a.part.tif")
    part.write_bytes(tif_bytes[:1000])
    part.with_name(part.name + ".json").write_text(json.dumps({"url": url, "etag": server.etag}))
    fetch(url, dest, dataset="T", settings=settings, validate=val)
    assert dest.read_bytes() == tif_bytes
    assert server.hits("/a.tif")[0]["Range"] == "bytes=1000-"
    assert leftovers(Path(settings["cache_dir"]), keep={"a.tif"}) == []


def test_connection_refused_is_retried_then_reported(settings, tmp_path):
    with FixtureServer() as srv:
        url = srv.url + "/a.tif"
    dest = Path(settings["cache_dir"]) / "a.tif"
    with pytest.raises(DownloadError, match=r"failed after 4 attempt\(s\).*Connection refused"):
        fetch(url, dest, dataset="T", settings=settings)


def test_unknown_setting_is_rejected(settings):
    with pytest.raises(DownloadError, match=r"unknown key\(s\) \['retry'\]"):
        fetch("http://127.0.0.1:9/x", "x", dataset="T", settings={**settings, "retry": 3})


# ------------------------------------------------------------------ validate_raster


def test_validate_raster_checks(tmp_path):
    good = write_tif(tmp_path / "g.tif", np.ones((4, 4), "float32"), from_origin(101, 37, 0.1, 0.1))
    validate_raster(
        good, expect_crs="EPSG:4326", bounds=(101.1, 36.7, 101.2, 36.8), dtype="float32", count=1
    )
    with pytest.raises(InputDataError, match="does not overlap the bbox"):
        validate_raster(good, bounds=(10, 10, 11, 11))
    with pytest.raises(InputDataError, match="CRS is EPSG:4326, expected EPSG:3995"):
        validate_raster(good, expect_crs="EPSG:3995")
    with pytest.raises(InputDataError, match="dtype float32"):
        validate_raster(good, dtype="uint8")
    with pytest.raises(InputDataError, match="1 band"):
        validate_raster(good, count=12)
    nocrs = write_tif(
        tmp_path / "n.tif", np.ones((4, 4), "float32"), from_origin(101, 37, 0.1, 0.1), crs=None
    )
    with pytest.raises(InputDataError, match="n.tif: raster has no CRS"):
        validate_raster(nocrs)
    junk = tmp_path / "j.tif"
    junk.write_bytes(b"<html>nope</html>")
    with pytest.raises(InputDataError, match=r"j.tif: not a readable raster") as info:
        validate_raster(junk)
    assert "\n" not in str(info.value)
