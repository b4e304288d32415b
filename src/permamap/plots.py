"""Maps and charts for people (matplotlib, Agg).

Every map has a hillshade under the data (colours multiplied by the shade, so classes keep their
hue), a legend or colour bar, a scale bar, a north arrow, degree coordinates with a light
graticule, a title with the scenario and horizon, and a footer with the provenance (permamap
version, config hash, sources, the coarse-sample note). Maps are drawn with the aspect ratio
1/cos(latitude), so a kilometre is as long east-west as north-south at the map's centre.

Rasters are read decimated (at most ``MAX_PX`` on the long side, from the COG overviews), so
memory stays bounded whatever the region size. Figures have a fixed size in pixels
(``figsize x dpi``, no tight cropping), so reports can lay them out predictably.

Figures:

* ``quicklooks`` (rule ``figures``): baseline MAGT, ground class and stability maps and the
  scenario x horizon comparison panel of ground class;
* ``maps_for`` (rule ``maps``): one map per scenario and horizon with a panel per class product
  (ground class, and degradation etc. when the run makes them), maps of the other baseline class
  products (e.g. IPA zones), and the permafrost area against warming chart from
  ``tables/areas.csv``.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from .products import PERMAFROST, PRODUCTS  # noqa: E402
from .rasterio_io import atomic_path, read_physical  # noqa: E402

MAX_PX = 900
DPI = 150
MAP_SIZE_IN = (8.0, 7.0)  # a single map: 1200 x 1050 px at 150 dpi
M_PER_DEG_LAT = 110_574.0  # metres per degree of latitude at about 37 N (display only)
M_PER_DEG_LON_EQ = 111_320.0  # metres per degree of longitude at the equator (display only)


# -- reading ----------------------------------------------------------------------------------


def read_decimated(path, max_px: int = MAX_PX):
    """(physical values with NaN for nodata, extent [W, E, S, N]) read at most ``max_px`` on the
    long side (scaled MAGT in degC: :func:`permamap.rasterio_io.read_physical`)."""
    with rasterio.open(path) as src:
        f = max(1, math.ceil(max(src.width, src.height) / max_px))
        shape = (max(1, src.height // f), max(1, src.width // f))
        data = read_physical(src, 1, out_shape=shape, resampling=rasterio.enums.Resampling.nearest)
        b = src.bounds
        return data, [b.left, b.right, b.bottom, b.top]


def raster_tags(path) -> dict:
    with rasterio.open(path) as src:
        return src.tags()


# -- hillshade --------------------------------------------------------------------------------


def auto_exaggeration(gradient) -> float:
    """Vertical exaggeration (1-30) that makes the 95th percentile slope about 30 degrees."""
    p95 = float(np.percentile(gradient, 95)) if np.size(gradient) else 0.0
    return float(np.clip(math.tan(math.radians(30)) / p95, 1.0, 30.0)) if p95 > 0 else 1.0


def hillshade(
    z,
    extent=None,
    azimuth_deg: float = 315.0,
    altitude_deg: float = 45.0,
    exaggeration: float | None = None,
) -> np.ndarray:
    """Lambertian hillshade in [0, 1] of an elevation array (display only).

    I = cos(zenith) cos(slope) + sin(zenith) sin(slope) cos(azimuth - aspect) (Burrough &
    McDonnell 1998, eq. 8.10), gradients with the cell sizes in metres of the array's extent
    at its centre latitude. ``exaggeration`` None picks a vertical exaggeration (1-30) that
    makes the 95th percentile slope about 30 degrees, so smooth or decimated DEMs still show
    their relief.
    """
    z = np.asarray(z, float)
    fill = np.nanmean(z) if np.isfinite(z).any() else 0.0
    z = np.nan_to_num(z, nan=fill)
    if min(z.shape) < 2:
        return np.ones_like(z)
    if extent is None:
        dx = dy = 200.0
    else:
        w, e, s, n = extent
        lat = math.radians((s + n) / 2)
        dx = (e - w) / z.shape[1] * M_PER_DEG_LON_EQ * math.cos(lat)
        dy = (n - s) / z.shape[0] * M_PER_DEG_LAT
    dzdy, dzdx = np.gradient(z, dy, dx)  # rows go south: dz/drow points south
    grad = np.hypot(dzdx, dzdy)
    if exaggeration is None:
        exaggeration = auto_exaggeration(grad)
    slope = np.arctan(grad * exaggeration)
    aspect = np.arctan2(-dzdx, dzdy)  # direction of steepest descent, clockwise from north
    zen = math.radians(90.0 - altitude_deg)
    az = math.radians(azimuth_deg)
    shade = math.cos(zen) * np.cos(slope) + math.sin(zen) * np.sin(slope) * np.cos(az - aspect)
    return np.clip(shade, 0.0, 1.0)


def shaded_rgba(rgba: np.ndarray, shade: np.ndarray | None, strength: float = 0.45) -> np.ndarray:
    """Multiply colours by (1 - strength) + strength x shade / mean(shade) (clipped)."""
    if shade is None or shade.shape != rgba.shape[:2]:
        return rgba
    rel = shade / max(float(np.mean(shade)), 1e-6)
    factor = np.clip((1 - strength) + strength * rel, 0.0, 1.25)
    out = rgba.copy()
    out[..., :3] = np.clip(out[..., :3] * factor[..., None], 0.0, 1.0)
    return out


# -- map furniture ----------------------------------------------------------------------------


def _lon(x, _pos=None) -> str:
    return f"{abs(x):.1f}°{'E' if x >= 0 else 'W'}"


def _lat(y, _pos=None) -> str:
    return f"{abs(y):.1f}°{'N' if y >= 0 else 'S'}"


def nice_length(x: float) -> float:
    """Largest of 1, 2, 5 x 10^n not above ``x``."""
    if x <= 0:
        return 1.0
    e = 10.0 ** math.floor(math.log10(x))
    return max(m * e for m in (1.0, 2.0, 5.0) if m * e <= x * (1 + 1e-9))


def setup_map_axes(ax, extent, *, labels: bool = True, fontsize: float = 8) -> None:
    """Geographic aspect (1/cos(lat)), degree tick labels and a light graticule."""
    w, e, s, n = extent
    ax.set_xlim(w, e)
    ax.set_ylim(s, n)
    ax.set_aspect(1.0 / math.cos(math.radians((s + n) / 2)))
    ax.xaxis.set_major_formatter(FuncFormatter(_lon))
    ax.yaxis.set_major_formatter(FuncFormatter(_lat))
    ax.tick_params(labelsize=fontsize, direction="out", length=3)
    ax.grid(color="white", alpha=0.45, linewidth=0.5, linestyle="-")
    if not labels:
        ax.set_xticklabels([])
        ax.set_yticklabels([])


def add_scale_bar(ax, extent, *, fontsize: float = 8) -> float:
    """A black-and-white scale bar (about a quarter of the map width) at the lower right;
    returns its length in km. Lengths along the map's centre parallel."""
    w, e, s, n = extent
    lat = (s + n) / 2
    km_per_deg = M_PER_DEG_LON_EQ / 1000.0 * math.cos(math.radians(lat))
    length_km = nice_length((e - w) * km_per_deg / 4)
    length_deg = length_km / km_per_deg
    x1 = e - (e - w) * 0.08
    x0 = x1 - length_deg
    y = s + (n - s) * 0.05
    h = (n - s) * 0.012
    half = length_deg / 2
    ax.add_patch(
        plt.Rectangle(
            (x0 - (e - w) * 0.015, y - h * 1.5),
            length_deg + (e - w) * 0.03,
            h * 6.2,
            facecolor="white",
            alpha=0.75,
            edgecolor="none",
            zorder=5,
        )
    )
    ax.add_patch(
        plt.Rectangle((x0, y), half, h, facecolor="black", edgecolor="black", lw=0.6, zorder=6)
    )
    ax.add_patch(
        plt.Rectangle(
            (x0 + half, y), half, h, facecolor="white", edgecolor="black", lw=0.6, zorder=6
        )
    )
    for x, t in ((x0, "0"), (x0 + half, f"{length_km / 2:g}"), (x1, f"{length_km:g}")):
        ax.text(x, y + h * 1.6, t, ha="center", va="bottom", fontsize=fontsize, zorder=7)
    ax.text(
        x1 + (e - w) * 0.006, y + h / 2, "km", ha="left", va="center", fontsize=fontsize, zorder=7
    )
    return length_km


def add_north_arrow(ax, *, x: float = 0.94, y: float = 0.86, size: float = 0.09) -> None:
    """A north arrow at the upper right (axes fraction); north is up on these maps."""
    ax.annotate(
        "",
        xy=(x, y + size),
        xytext=(x, y),
        xycoords="axes fraction",
        arrowprops=dict(
            facecolor="black",
            edgecolor="white",
            width=5,
            headwidth=13,
            headlength=11,
            linewidth=0.6,
        ),
        zorder=8,
    )
    ax.text(
        x,
        y + size + 0.012,
        "N",
        transform=ax.transAxes,
        ha="center",
        va="bottom",
        fontsize=12,
        fontweight="bold",
        zorder=8,
        bbox=dict(facecolor="white", edgecolor="none", alpha=0.6, pad=1),
    )


def add_places(ax, config: dict, extent, *, fontsize: float = 8) -> None:
    """Mark the climate station (e.g. Xining) when it lies on the map, as a reference point."""
    st = (config.get("climate") or {}).get("station") or {}
    lon, lat = st.get("lon"), st.get("lat")
    w, e, s, n = extent
    if lon is None or lat is None or not (w < lon < e and s < lat < n):
        return
    ax.plot(lon, lat, marker="o", ms=5, mfc="white", mec="black", mew=1.2, zorder=7)
    ax.annotate(
        st.get("name", "station"),
        (lon, lat),
        xytext=(5, 4),
        textcoords="offset points",
        fontsize=fontsize,
        fontweight="bold",
        zorder=7,
        bbox=dict(facecolor="white", edgecolor="none", alpha=0.6, pad=1),
    )


def provenance_line(config: dict, tags: dict | None = None) -> str:
    from . import __version__
    from .config import config_hash

    tags = tags or {}
    line = (
        f"permamap {__version__} · config {config_hash(config)} · EPSG:4326\n"
        f"DEM: {config['dem']['source']} · climate: {config['climate']['source']} · "
        f"ground model: {config['ground']['model']}"
    )
    if config["dem"]["source"] == "pvlib_sample":
        line += (
            "\nOffline sample: 5-arcmin (about 9 km) elevations; no detail finer than 9 km is real."
        )
    return line


FOOTER_IN = 0.45  # height reserved at the bottom of every figure for the provenance footer


def _footer(fig, config: dict, fontsize: float = 6.5) -> None:
    """Provenance footer in the reserved strip at the bottom of the figure."""
    fig.text(
        0.008,
        0.004,
        provenance_line(config),
        fontsize=fontsize,
        color="0.35",
        ha="left",
        va="bottom",
    )
    h = fig.get_figheight()
    fig.get_layout_engine().set(rect=(0, FOOTER_IN / h, 1, 1 - FOOTER_IN / h))  # l, b, w, h


def _save(fig, path, dpi: int = DPI) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def _dpi(config: dict) -> int:
    return int(config.get("deliverables", {}).get("maps", {}).get("dpi", DPI))


def map_aspect(extent) -> float:
    """Height / width of a map of ``extent`` drawn with aspect 1/cos(centre latitude)."""
    w, e, s, n = extent
    return (n - s) / ((e - w) * math.cos(math.radians((s + n) / 2)))


def map_figsize(
    extent, *, side_in: float = 2.9, max_map_in: float = 6.2, extra_h_in: float = 1.5
) -> tuple[float, float]:
    """Figure size (inches) of one map with a legend column of ``side_in`` to its right: the
    longer map side is ``max_map_in``; the figure is rounded to whole pixels at 100 dpi steps."""
    a = map_aspect(extent)
    map_w, map_h = (max_map_in, max_map_in * a) if a <= 1 else (max_map_in / a, max_map_in)
    return (round(map_w + side_in + 1.0, 1), round(map_h + extra_h_in, 1))


def _extent_of(path) -> list:
    with rasterio.open(path) as src:
        b = src.bounds
    return [b.left, b.right, b.bottom, b.top]


# -- drawing ----------------------------------------------------------------------------------


def _shade_for(elev_path, shape, extent):
    if elev_path is None:
        return None
    z, zext = read_decimated(elev_path)
    if z.shape != shape:
        return None
    return hillshade(z, zext)


def class_handles(categories: dict, present=None) -> list:
    def label(c):
        absent = present is not None and c not in present
        return f"{c}  {categories[c][0]}" + ("  (none here)" if absent else "")

    return [
        Patch(
            facecolor=np.array(categories[c][1]) / 255,
            edgecolor="0.3",
            linewidth=0.5,
            label=label(c),
        )
        for c in sorted(categories)
    ]


def draw_class(
    ax,
    class_path,
    elev_path,
    categories: dict,
    title: str | None = None,
    fontsize: float = 8,
    labels: bool = True,
):
    """Class raster coloured by its categories over the hillshade; (legend handles, extent)."""
    data, ext = read_decimated(class_path)
    codes = sorted(categories)
    lut = np.zeros((max(codes) + 2, 4))
    for c in codes:
        lut[c, :3] = np.array(categories[c][1]) / 255
        lut[c, 3] = 1.0
    idx = np.where(np.isfinite(data), data, max(codes) + 1).astype(int)
    idx[(idx < 0) | (idx > max(codes))] = max(codes) + 1
    rgba = shaded_rgba(lut[idx], _shade_for(elev_path, data.shape, ext))
    ax.imshow(rgba, extent=ext, interpolation="nearest", zorder=1)
    setup_map_axes(ax, ext, fontsize=fontsize, labels=labels)
    if title:
        ax.set_title(title, fontsize=fontsize + 1)
    present = {int(v) for v in np.unique(data[np.isfinite(data)])}
    return class_handles(categories, present), ext


def draw_continuous(
    ax,
    path,
    elev_path,
    cmap: str,
    norm,
    title: str | None = None,
    fontsize: float = 8,
    zero_contour: bool = False,
):
    """Continuous raster on a colour map over the hillshade; (ScalarMappable, extent)."""
    data, ext = read_decimated(path)
    cm = plt.get_cmap(cmap)
    rgba = cm(norm(np.ma.masked_invalid(data)))
    rgba[~np.isfinite(data)] = (0, 0, 0, 0)
    rgba = shaded_rgba(rgba, _shade_for(elev_path, data.shape, ext))
    ax.imshow(rgba, extent=ext, interpolation="nearest", zorder=1)
    if zero_contour and np.nanmin(data) < 0 < np.nanmax(data):
        w, e, s, n = ext
        xs = w + (np.arange(data.shape[1]) + 0.5) * (e - w) / data.shape[1]
        ys = n - (np.arange(data.shape[0]) + 0.5) * (n - s) / data.shape[0]
        cs = ax.contour(xs, ys, data, levels=[0.0], colors="black", linewidths=0.9, zorder=3)
        ax.clabel(cs, fmt="0 °C", fontsize=fontsize - 1)
    setup_map_axes(ax, ext, fontsize=fontsize)
    if title:
        ax.set_title(title, fontsize=fontsize + 1)
    return plt.cm.ScalarMappable(norm=norm, cmap=cm), ext


def _map_title(
    config: dict,
    what: str,
    scenario: str | None = None,
    horizon=None,
    warming_c: float | None = None,
) -> str:
    region = config["region"].get("name", "")
    if scenario in (None, "baseline"):
        when = f"baseline climate (about {config['climate']['baseline_year']})"
    else:
        label = config["scenarios"].get(scenario, {}).get("label", scenario)
        when = f"{label}, {horizon}"
        if warming_c is not None:
            when += f" (+{float(warming_c):.1f} °C air warming)"
    return f"{what}\n{when}\n{region}"


def _what(product) -> str:
    return product.description.split(":")[0].split(" (")[0]


def class_map_figure(
    config: dict,
    class_path,
    elev_path,
    product,
    out_png,
    *,
    scenario=None,
    horizon=None,
    warming_c=None,
) -> None:
    """One class map: hillshade, legend, scale bar, north arrow, coordinates, title, footer."""
    ext = _extent_of(class_path)
    fig, ax = plt.subplots(figsize=map_figsize(ext), layout="constrained")
    handles, ext = draw_class(ax, class_path, elev_path, product.categories)
    add_scale_bar(ax, ext)
    add_places(ax, config, ext)
    add_north_arrow(ax)
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.03, 1.0),
        fontsize=8,
        title=f"{product.name} (code, class)",
        title_fontsize=8,
        frameon=False,
        alignment="left",
    )
    ax.set_title(
        _map_title(config, _what(product), scenario, horizon, warming_c), fontsize=10, loc="left"
    )
    _footer(fig, config)
    _save(fig, out_png, _dpi(config))


def magt_map_figure(
    config: dict,
    magt_path,
    elev_path,
    out_png,
    *,
    scenario=None,
    horizon=None,
    warming_c=None,
    limits=None,
) -> None:
    """MAGT on a diverging ramp centred on 0 C with the 0 C isotherm (the permafrost limit)."""
    if limits is None:
        from .styles import RAMPS, ramp_limits, sample_values

        limits = ramp_limits(RAMPS["magt"], sample_values(magt_path))
    vmin, vmax = limits
    norm = TwoSlopeNorm(0.0, min(vmin, -0.1), max(vmax, 0.1))
    ext = _extent_of(magt_path)
    fig, ax = plt.subplots(figsize=map_figsize(ext, side_in=1.6), layout="constrained")
    sm, ext = draw_continuous(ax, magt_path, elev_path, "RdBu_r", norm, zero_contour=True)
    add_scale_bar(ax, ext)
    add_places(ax, config, ext)
    add_north_arrow(ax)
    cb = fig.colorbar(sm, ax=ax, shrink=0.85, pad=0.03, extend="both")
    cb.set_label("MAGT (°C); black line: 0 °C = lower limit of permafrost", fontsize=8)
    cb.ax.tick_params(labelsize=8)
    ax.set_title(
        _map_title(config, "Mean annual ground temperature", scenario, horizon, warming_c),
        fontsize=10,
        loc="left",
    )
    _footer(fig, config)
    _save(fig, out_png, _dpi(config))


# -- the figures rule (baseline maps + scenario panel) ----------------------------------------


def scenario_panel(
    config: dict, baseline_path, scenario_paths: dict, elev_path, product, out_png, title: str
) -> None:
    """Rows = scenarios, columns = the baseline then each horizon, one class product."""
    from .config import scenario_warming_c

    scen = [s for s in config["scenarios"] if any(k[0] == s for k in scenario_paths)]
    hor = sorted({int(k[1]) for k in scenario_paths})
    ncols = len(hor) + (1 if baseline_path else 0)
    ext = _extent_of(baseline_path or next(iter(scenario_paths.values())))
    a = map_aspect(ext)
    cell = 2.6
    pw, ph = (cell, cell * a) if a <= 1 else (cell / a, cell)
    figsize = (round(pw * ncols + 0.9, 1), round((ph + 0.3) * len(scen) + 1.6, 1))
    fig = plt.figure(figsize=figsize, layout="constrained")
    gs = fig.add_gridspec(len(scen) + 1, ncols, height_ratios=[1.0] * len(scen) + [0.06])
    axes = np.array([[fig.add_subplot(gs[i, j]) for j in range(ncols)] for i in range(len(scen))])
    for i, s in enumerate(scen):
        label = config["scenarios"][s].get("label", s)
        warming = scenario_warming_c(config, s)
        cols = [("baseline", baseline_path)] if baseline_path else []
        cols += [
            (
                f"{h} (+{warming[h]:.1f} °C)",
                scenario_paths.get((s, h)) or scenario_paths.get((s, str(h))),
            )
            for h in hor
        ]
        for j, (head, path) in enumerate(cols):
            ax = axes[i, j]
            if path is None:
                ax.set_axis_off()
                continue
            draw_class(ax, path, elev_path, product.categories, head, fontsize=6.5)
            ax.xaxis.set_major_locator(plt.MaxNLocator(3))
            ax.yaxis.set_major_locator(plt.MaxNLocator(4))
            if j:
                ax.set_yticklabels([])
            if i < len(scen) - 1:
                ax.set_xticklabels([])
        axes[i, 0].set_ylabel(label, fontsize=9, fontweight="bold")
    add_north_arrow(axes[0, ncols - 1], size=0.16, y=0.72, x=0.9)
    add_scale_bar(axes[-1, 0], ext, fontsize=5.5)
    leg = fig.add_subplot(gs[-1, :])
    leg.set_axis_off()
    leg.legend(
        handles=class_handles(product.categories),
        loc="center",
        ncol=min(3, len(product.categories)),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(f"{title}\n{config['region'].get('name', '')}", fontsize=10)
    _footer(fig, config, fontsize=5.5)
    _save(fig, out_png, _dpi(config))


def quicklooks(config: dict, inp, out) -> None:
    """Baseline MAGT, class and stability maps and the scenario x horizon class panel."""
    magt_map_figure(config, inp.magt, inp.elevation, out.magt)
    class_map_figure(config, inp.cls, inp.elevation, PRODUCTS["class"], out.cls)
    class_map_figure(config, inp.stability, inp.elevation, PRODUCTS["stability"], out.stability)
    pairs = [(s, h) for s in config["scenarios"] for h in config["horizons"]]
    paths = dict(zip(pairs, inp.scenarios, strict=True))
    scenario_panel(
        config,
        inp.cls,
        paths,
        inp.elevation,
        PRODUCTS["class"],
        out.panel,
        "Ground class under warming scenarios (equilibrium response)",
    )


# -- the maps rule ----------------------------------------------------------------------------


def scenario_horizon_figure(
    config: dict, scenario: str, horizon, class_paths: list, elev_path, out_png
) -> None:
    """One figure per scenario and horizon: a map per class product (class, degradation, ...),
    each with its legend below it."""
    from .config import scenario_warming_c
    from .styles import product_of

    prods = [(product_of(p), p) for p in class_paths]
    prods = [(pr, p) for pr, p in prods if pr is not None and pr.is_class]
    prods.sort(key=lambda x: (x[0].name != "class", x[0].name))
    warming = scenario_warming_c(config, scenario).get(int(horizon))
    if len(prods) == 1:
        class_map_figure(
            config,
            prods[0][1],
            elev_path,
            prods[0][0],
            out_png,
            scenario=scenario,
            horizon=horizon,
            warming_c=warming,
        )
        return
    n = max(1, len(prods))
    ext = _extent_of(prods[0][1]) if prods else [0, 1, 0, 1]
    a = map_aspect(ext)
    cell = 5.2 if n == 1 else 4.2
    pw, ph = (cell, cell * a) if a <= 1 else (cell / a, cell)
    fig = plt.figure(
        figsize=(round((pw + 1.4) * n + 0.4, 1), round(ph + 2.6, 1)), layout="constrained"
    )
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (product, path) in zip(axes, prods, strict=False):
        handles, ext = draw_class(ax, path, elev_path, product.categories, _what(product))
        ax.xaxis.set_major_locator(plt.MaxNLocator(4))
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(0.0, -0.08),
            fontsize=7.5,
            frameon=False,
        )
    if prods:
        add_scale_bar(axes[0], ext, fontsize=7)
        add_places(axes[0], config, ext, fontsize=7)
        add_north_arrow(axes[-1])
    else:
        axes[0].text(0.5, 0.5, "no class product", ha="center", transform=axes[0].transAxes)
    what = " and ".join(_what(p).lower() for p, _ in prods).capitalize() or "No class product"
    fig.suptitle(_map_title(config, what, scenario, horizon, warming), fontsize=10)
    _footer(fig, config)
    _save(fig, out_png, _dpi(config))


def areas_chart(config: dict, areas_csv, out_png) -> None:
    """Permafrost area (km^2 and % of the baseline) against air warming, a line per scenario,
    each point labelled with its horizon."""
    import pandas as pd

    df = pd.read_csv(areas_csv)
    if "product" in df.columns:
        df = df[df["product"] == "class"]
    pf = df[df["class_code"] == PERMAFROST]
    base = pf[pf["scenario"] == "baseline"]
    base_area = float(base["area_km2"].iloc[0]) if len(base) else float("nan")
    fig, ax = plt.subplots(figsize=(8.0, 5.6), layout="constrained")
    scenarios = [s for s in config["scenarios"] if s in set(pf["scenario"])]
    scenarios += [s for s in pf["scenario"].unique() if s not in scenarios and s != "baseline"]
    colours = plt.get_cmap("plasma")(np.linspace(0.1, 0.8, max(1, len(scenarios))))
    for colour, s in zip(colours, scenarios, strict=False):
        g = pf[pf["scenario"] == s].sort_values("warming_c")
        x = np.concatenate([[0.0], g["warming_c"].to_numpy(float)])
        y = np.concatenate([[base_area], g["area_km2"].to_numpy(float)])
        label = g["label"].iloc[0] if "label" in g and len(g) else s
        ax.plot(x, y, "-o", color=colour, label=label, lw=1.8, ms=5)
        for xi, yi, h in zip(x[1:], y[1:], g["horizon"], strict=True):
            ax.annotate(
                str(h),
                (xi, yi),
                textcoords="offset points",
                xytext=(4, 5),
                fontsize=7,
                color=colour,
            )
    ax.plot([0], [base_area], "ks", ms=7, label=f"baseline ({base_area:,.0f} km²)", zorder=5)
    ax.set_xlabel("air warming relative to the baseline climate (°C)")
    ax.set_ylabel("perennial permafrost area (km²)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if base_area and math.isfinite(base_area):
        sec = ax.secondary_yaxis(
            "right", functions=(lambda v: v / base_area * 100, lambda v: v * base_area / 100)
        )
        sec.set_ylabel("% of the baseline permafrost area")
    ax.legend(fontsize=8, title="scenario (points: horizon)", title_fontsize=8)
    ax.set_title(
        "Permafrost area against warming (equilibrium response)\n"
        f"{config['region'].get('name', '')}",
        fontsize=10,
    )
    _footer(fig, config)
    _save(fig, out_png, _dpi(config))


def maps_for(config: dict, rasters: list, elevation, areas_csv, out: dict) -> None:
    """The ``maps`` rule: ``out`` maps output paths to what they show.

    ``out["areas_chart"]``: the area chart; ``out["baseline"][product]``: a baseline class map;
    ``out["scenarios"][(scenario, horizon)]``: the scenario/horizon figure.
    """
    from .styles import product_of

    by_pair: dict[tuple[str, str], list] = {}
    baseline: dict[str, str] = {}
    for p in rasters:
        parts = Path(p).parts
        product = product_of(p)
        if product is None or not product.is_class:
            continue
        if "scenarios" in parts:
            i = parts.index("scenarios")
            by_pair.setdefault((parts[i + 1], parts[i + 2]), []).append(p)
        elif "baseline" in parts:
            baseline[product.name] = p
    for name, png in out.get("baseline", {}).items():
        class_map_figure(config, baseline[name], elevation, PRODUCTS[name], png)
    for (s, h), png in out.get("scenarios", {}).items():
        scenario_horizon_figure(config, s, h, by_pair.get((s, str(h)), []), elevation, png)
    if out.get("areas_chart"):
        areas_chart(config, areas_csv, out["areas_chart"])


def run_maps(smk) -> None:
    """Snakemake adapter (rule ``maps``): ``params.plan`` says what each output shows
    (``areas_chart``: path; ``baseline``: {product: path}; ``scenarios``: [[s, h, path], ...])."""
    plan = smk.params.plan
    out = {
        "areas_chart": plan.get("areas_chart"),
        "baseline": dict(plan.get("baseline", {})),
        "scenarios": {(s, str(h)): p for s, h, p in plan.get("scenarios", [])},
    }
    maps_for(
        smk.config, [str(p) for p in smk.input.rasters], smk.input.elevation, smk.input.areas, out
    )
