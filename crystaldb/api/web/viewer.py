"""The structure page's 3D view: one structure as a chemiscope dataset, for chemiscope's own
StructureVisualizer (chemiscope.min.js, served from the installed package) to draw.

Bonds are either chemiscope's guess (3Dmol's covalent-radius rule inside the cell, when the
dataset gives none) or the edges of a stored quotient graph. chemiscope draws a bond between
two atoms of the dataset only, so an edge to a site in a neighbouring cell brings that periodic
image along as an extra atom: each drawn segment is then an edge of the stored graph, at its
stored length, and the atoms outside the unit cell are exactly the images the edges reach.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_VIEW_ATOMS = 5000  # sites plus edge images: above this, the guess (3Dmol slows down)


@dataclass
class View:
    """A chemiscope dataset and the sentence saying where its bonds come from."""

    dataset: dict[str, Any]
    bonds: str
    images: int = 0
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """What /structures/{id}/view.json answers."""
        return {
            "dataset": self.dataset,
            "bonds": self.bonds,
            "images": self.images,
            "problems": self.problems,
        }


def structure_view(structure: dict[str, Any], graph: dict[str, Any] | None) -> View:
    """The dataset of a structure (GraphQL's lattice and sites { species cartesian }), bonded by
    the quotient graph's edges when one is given (edgeSrc, edgeDst, edgeImages)."""
    lattice = structure["lattice"]
    names = [site["species"] for site in structure["sites"]]
    xyz = [list(site["cartesian"]) for site in structure["sites"]]
    title = f"structure {structure['id']}: {structure['reducedFormula']}"
    view = View(_dataset(title, names, xyz, lattice), "chemiscope's guess (covalent radii)")
    if graph is None:
        return view
    recipe = graph["recipe"]["name"]
    if len(names) + graph["numEdges"] > MAX_VIEW_ATOMS:
        view.problems.append(
            f"quotient graph {recipe} has {graph['numEdges']:,} edges: too many to draw, "
            "so the bonds shown are chemiscope's guess"
        )
        return view
    bonds: set[tuple[int, int]] = set()
    images: dict[tuple[int, int, int, int], int] = {}
    edges = zip(graph["edgeSrc"], graph["edgeDst"], graph["edgeImages"], strict=True)
    for src, dst, shift in edges:
        if not any(shift):
            if src != dst:
                bonds.add((min(src, dst), max(src, dst)))
            continue
        key = (dst, *shift)
        if key not in images:
            images[key] = len(names)
            names.append(names[dst])
            xyz.append(_translated(xyz[dst], shift, lattice))
        bonds.add((src, images[key]))
    dataset = _dataset(title, names, xyz, lattice)
    dataset["structures"][0]["bonds"] = [[i, j, 1] for i, j in sorted(bonds)]
    sentence = f"the {graph['numEdges']:,} edges of the stored quotient graph {recipe}" + (
        f" ({len(images)} periodic images outside the cell close them)" if images else ""
    )
    return View(dataset, sentence, len(images))


def _translated(point: list[float], shift: list[int], lattice: list[list[float]]) -> list[float]:
    """A cartesian point moved by whole lattice vectors."""
    return [point[k] + sum(shift[i] * lattice[i][k] for i in range(3)) for k in range(3)]


def _dataset(
    title: str, names: list[str], xyz: list[list[float]], lattice: list[list[float]]
) -> dict[str, Any]:
    """chemiscope's dataset format: one structure with its cell, shown with the unit cell."""
    structure = {
        "size": len(names),
        "names": names,
        "x": [p[0] for p in xyz],
        "y": [p[1] for p in xyz],
        "z": [p[2] for p in xyz],
        "cell": [x for vector in lattice for x in vector],
    }
    return {
        "meta": {"name": title},
        "structures": [structure],
        "properties": {},
        "settings": {"structure": [{"unitCell": True, "bonds": True}]},
    }
