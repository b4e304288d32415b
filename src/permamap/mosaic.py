"""Mosaic per-tile bands into one Cloud-Optimized GeoTIFF per product.

The tiles share the working grid, so the mosaic is a GDAL VRT that points each tile's band at
its window (no pixel is copied), converted to a COG with overviews by rio-cogeo. Memory is
bounded by GDAL's block cache, not by the region size.
"""

from __future__ import annotations

import html
import os
import tempfile
from pathlib import Path

import rasterio

from .grid import CRS, Grid, Tile
from .products import Product, colormap
from .rasterio_io import band_index, to_cog

_DTYPES = {"float32": "Float32", "float64": "Float64", "uint8": "Byte", "int16": "Int16"}


def vrt_xml(grid: Grid, product: Product, sources: list[tuple[Tile, str, int]]) -> str:
    """VRT document placing band ``band`` of each tile file at the tile's window."""
    t = grid.transform
    parts = [
        f'<VRTDataset rasterXSize="{grid.width}" rasterYSize="{grid.height}">',
        f"  <SRS>{html.escape(rasterio.crs.CRS.from_string(CRS).to_wkt())}</SRS>",
        f"  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>",
        f'  <VRTRasterBand dataType="{_DTYPES[product.dtype]}" band="1">',
        f"    <NoDataValue>{product.nodata}</NoDataValue>",
        f"    <Description>{html.escape(product.description)}</Description>",
        f"    <UnitType>{html.escape(product.units)}</UnitType>",
    ]
    if product.is_scaled:
        # physical = stored * Scale + Offset; the COG driver copies both to the COG's bands
        parts.append(f"    <Offset>{product.offset!r}</Offset>")
        parts.append(f"    <Scale>{product.scale!r}</Scale>")
    if product.is_class:
        parts.append("    <ColorInterp>Palette</ColorInterp>")
        parts.append("    <ColorTable>")
        cmap = colormap(product)
        for code in range(max(cmap) + 1):
            r, g, b, a = cmap.get(code, (0, 0, 0, 0))
            parts.append(f'      <Entry c1="{r}" c2="{g}" c3="{b}" c4="{a}"/>')
        parts.append("    </ColorTable>")
    for tile, path, band in sources:
        w = tile.window
        parts += [
            "    <SimpleSource>",
            f'      <SourceFilename relativeToVRT="0">{html.escape(os.path.abspath(path))}</SourceFilename>',
            f"      <SourceBand>{band}</SourceBand>",
            f'      <SrcRect xOff="0" yOff="0" xSize="{w.width}" ySize="{w.height}"/>',
            f'      <DstRect xOff="{w.col_off}" yOff="{w.row_off}" xSize="{w.width}" ySize="{w.height}"/>',
            "    </SimpleSource>",
        ]
    parts += ["  </VRTRasterBand>", "</VRTDataset>"]
    return "\n".join(parts) + "\n"


def mosaic_product(
    grid: Grid,
    tiles: list[Tile],
    tile_paths: list[str],
    band_name: str,
    product: Product,
    out_path: str | Path,
    *,
    tags: dict,
    compress: str = "deflate",
    threads: int = 2,
) -> None:
    """Write ``out_path`` (COG, written atomically) from band ``band_name`` of every tile file."""
    sources = [
        (t, str(p), band_index(p, band_name)) for t, p in zip(tiles, tile_paths, strict=True)
    ]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    all_tags = {"product": product.name, "units": product.units, **tags}
    if product.is_class:
        all_tags.update({f"class_{code}": name for code, (name, _) in product.categories.items()})
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=f".{out_path.name}.") as tmpdir:
        vrt = Path(tmpdir) / "mosaic.vrt"
        vrt.write_text(vrt_xml(grid, product, sources))
        to_cog(vrt, out_path, product, compress=compress, threads=threads, tags=all_tags)
