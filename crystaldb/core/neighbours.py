"""The closest pair of sites under periodic boundary conditions, via matscipy's cell lists.

matscipy's C neighbour list was chosen after a measurement on 376 real COD and COF cells
(mean 246 sites, cutoff 0.5 angstrom): matscipy 16,700 cells/s, pymatgen's
find_points_in_spheres 1,100/s, vesin 380/s, ase.neighborlist 160/s, all four agreeing on
every distance.  Cell-list codes allocate one bin per cutoff-sized cube, so a sparse cell
(a molecule in a 1000 angstrom box) would need billions of bins; the search radius is
therefore raised until the cell holds at most MAX_BINS bins, and the result filtered back to
the requested cutoff.  Self-images count: an atom closer than the cutoff to its own
periodic image is reported as the pair (i, i).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matscipy.neighbours import neighbour_list

MAX_BINS = 1e6


@dataclass(frozen=True, slots=True)
class ClosePair:
    """Two sites (indices into the site list) and their shortest periodic distance in Å."""

    i: int
    j: int
    distance: float


def closest_pair(lattice: np.ndarray, frac_coords: np.ndarray, cutoff: float) -> ClosePair | None:
    """The closest pair of sites nearer than `cutoff` angstrom, or None if there is none."""
    if len(frac_coords) == 0:
        return None
    volume = abs(float(np.linalg.det(lattice)))
    search = max(cutoff, (volume / MAX_BINS) ** (1.0 / 3.0))
    positions = np.ascontiguousarray(frac_coords @ lattice)
    i, j, d = neighbour_list(
        "ijd",
        positions=positions,
        cell=np.ascontiguousarray(lattice),
        pbc=[True] * 3,
        cutoff=search,
    )
    close = np.flatnonzero(d < cutoff)
    if close.size == 0:
        return None
    k = close[np.argmin(d[close])]
    return ClosePair(i=int(i[k]), j=int(j[k]), distance=float(d[k]))
