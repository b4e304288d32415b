"""PNG quick-look maps (matplotlib, Agg). Rasters are read decimated (at most ``MAX_PX`` on the
long side) so memory stays bounded whatever the region size."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap, TwoSlopeNorm  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from .products import GROUND_CLASSES, STABILITY_CLASSES  # noqa: E402
from .rasterio_io import atomic_path  # noqa: E402

MAX_PX = 900


def read_decimated(path):
    """(array with NaN for nodata, extent [W, E, S, N]) read at most MAX_PX on the long side."""
    with rasterio.open(path) as src:
        f = max(1, math.ceil(max(src.width, src.height) / MAX_PX))
        shape = (max(1, src.height // f), max(1, src.width // f))
        data = src.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.nearest).astype(float)
        if src.nodata is not None:
            data[data == src.nodata] = np.nan
        b = src.bounds
        return data, [b.left, b.right, b.bottom, b.top]


def hillshade(z, azimuth_deg=315.0, altitude_deg=45.0):
    """Lambertian hillshade of a (decimated) elevation array in pixel units, for display only."""
    gy, gx = np.gradient(np.nan_to_num(z, nan=np.nanmean(z)))
    slope = np.arctan(np.hypot(gx, gy) / 200.0)
    aspect = np.arctan2(-gx, gy)
    az, alt = np.radians(azimuth_deg), np.radians(altitude_deg)
    return np.clip(np.sin(alt) * np.cos(slope) + np.cos(alt) * np.sin(slope) * np.cos(az - aspect), 0, 1)


def _class_cmap(categories):
    codes = sorted(categories)
    cmap = ListedColormap([np.array(categories[c][1]) / 255 for c in codes])
    norm = BoundaryNorm([c - 0.5 for c in codes] + [codes[-1] + 0.5], cmap.N)
    handles = [Patch(color=np.array(categories[c][1]) / 255, label=f"{c} {categories[c][0]}") for c in codes]
    return cmap, norm, handles


def _axes_labels(ax):
    ax.set_xlabel("longitude (deg E)")
    ax.set_ylabel("latitude (deg N)")


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")
    plt.close(fig)


def class_map(ax, class_path, elev_path, categories, title):
    data, ext = read_decimated(class_path)
    z, _ = read_decimated(elev_path)
    if z.shape == data.shape:
        ax.imshow(hillshade(z), cmap="gray", extent=ext, vmin=0, vmax=1)
    cmap, norm, handles = _class_cmap(categories)
    ax.imshow(np.ma.masked_invalid(data), cmap=cmap, norm=norm, extent=ext, alpha=0.75, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    return handles


def quicklooks(config: dict, inp, out) -> None:
    """Baseline MAGT, class and stability maps and a scenario x horizon panel of class maps."""
    region = config["region"].get("name", "")
    magt, ext = read_decimated(inp.magt)
    fig, ax = plt.subplots(figsize=(7, 6))
    lim = max(1.0, float(np.nanmax(np.abs(magt)))) if np.isfinite(magt).any() else 1.0
    im = ax.imshow(np.ma.masked_invalid(magt), cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -lim, lim), extent=ext)
    fig.colorbar(im, ax=ax, label="MAGT (degC)")
    ax.set_title(f"Mean annual ground temperature, baseline ({config['ground']['model']})\n{region}", fontsize=9)
    _axes_labels(ax)
    _save(fig, out.magt)

    for key, cats, title in (("cls", GROUND_CLASSES, "Ground class"), ("stability", STABILITY_CLASSES, "Permafrost thermal stability")):
        fig, ax = plt.subplots(figsize=(7, 6))
        handles = class_map(ax, inp[key], inp.elevation, cats, f"{title}, baseline\n{region}")
        ax.legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.9)
        _axes_labels(ax)
        _save(fig, out[key])

    scen = list(config["scenarios"])
    hor = list(config["horizons"])
    fig, axes = plt.subplots(len(scen), len(hor), figsize=(3.2 * len(hor), 3.0 * len(scen)), squeeze=False)
    paths = iter(inp.scenarios)
    handles = []
    for i, s in enumerate(scen):
        for j, h in enumerate(hor):
            label = config["scenarios"][s].get("label", s)
            handles = class_map(axes[i, j], next(paths), inp.elevation, GROUND_CLASSES, f"{label} {h}")
            axes[i, j].tick_params(labelsize=6)
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8)
    fig.suptitle(f"Ground class under warming scenarios (equilibrium)\n{region}", fontsize=10)
    _save(fig, out.panel)
