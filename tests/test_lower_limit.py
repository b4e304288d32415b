"""Lower limit of permafrost by aspect: recovered from a synthetic mountain with known limits."""

import math

import numpy as np
import pytest

from permamap.lower_limit import (
    SECTORS,
    Histograms,
    aspect_sector,
    logistic_lower_limit,
    table_rows,
)


def test_sectors():
    a = np.array([0.0, 22.4, 22.6, 90.0, 180.0, 270.0, 337.4, 337.6, 359.9, -1.0, 45.0])
    s = np.array([10.0] * 9 + [0.0, 1.0])
    names = [SECTORS[i] for i in aspect_sector(a, s, 2.0)]
    assert names == ["N", "N", "NE", "E", "S", "W", "NW", "N", "N", "flat", "flat"]


def test_recovers_known_limits_per_aspect():
    # A synthetic mountain: permafrost above 3,500 m on north-facing and 3,800 m on south-facing
    # slopes (a 300 m contrast, as field surveys report on the plateau), sharp boundaries.
    rng = np.random.default_rng(0)
    n = 200_000
    z = rng.uniform(3000, 4500, n)
    aspect = rng.choice([0.0, 180.0], n)
    slope = np.full(n, 20.0)
    limit = np.where(aspect == 0.0, 3500.0, 3800.0)
    pf = z >= limit
    hist = Histograms(25.0)
    hist.add(z, aspect_sector(aspect, slope, 2.0), pf, np.ones(n, bool), np.ones(n))
    rows = {r["sector"]: r for r in table_rows(hist, "baseline", 1995, 0.0)}
    assert rows["N"]["lower_limit_m"] == pytest.approx(3500, abs=25)
    assert rows["S"]["lower_limit_m"] == pytest.approx(3800, abs=25)
    assert rows["N"]["lowest_permafrost_band_m"] == 3500.0
    assert rows["E"]["status"] == "none" and math.isnan(rows["E"]["lower_limit_m"])


def test_fuzzy_boundary_gives_the_50_percent_elevation():
    # P(permafrost | z) = logistic((z - 3600) / 60): the fit returns 3,600 m
    rng = np.random.default_rng(1)
    z = rng.uniform(3000, 4200, 400_000)
    pf = rng.uniform(size=z.size) < 1 / (1 + np.exp(-(z - 3600) / 60))
    hist = Histograms(20.0)
    sector = np.full(z.size, 5)
    hist.add(z, sector, pf, np.ones(z.size, bool), np.ones(z.size))
    z50, status = logistic_lower_limit(hist.centres(), hist.permafrost[5], hist.total[5])
    assert status == "ok" and z50 == pytest.approx(3600, abs=15)


def test_all_and_inverted():
    c = np.array([3000.0, 3100.0, 3200.0])
    assert logistic_lower_limit(c, np.array([1.0, 1, 1]), np.array([1.0, 1, 1]))[1] == "all"
    assert logistic_lower_limit(c, np.array([1.0, 0.5, 0]), np.array([1.0, 1, 1]))[1] == "inverted"
