"""chemiscope: a kernel map as a chemiscope dataset (meta, structures, properties, settings).

chemiscope (lab-cosmo) is the field's structure-property explorer; its Python package builds
and checks datasets (`chemiscope.create_input`) and ships the viewer (`chemiscope.min.js`), so
the web map and the release export both go through `chemiscope_dataset` here: one builder,
validated by chemiscope itself. A map is plain data (`KernelMap`), loaded from the database by
`crystaldb.jobs.embeddings.load_map`; this module never reads the database.

The release export, ``<name>.chemiscope.json.gz``, holds every member with its cell, the map's
coordinates and colour choices, the release's split and frozen label; it opens in chemiscope's
app (https://chemiscope.org) or `chemiscope.show`. Unknown values are NaN, as chemiscope's
Python writer stores them (chemiscope hides those points when that property is shown).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from ase.data import chemical_symbols

from crystaldb.core.release_data import ReleaseData
from crystaldb.formats.members import ExportError, frac_of, label_of, lattice_of, numbers_of

NAN = float("nan")
METHOD_NAMES = {"kpca": "kernel PCA", "tsne": "t-SNE"}
ID_PROPERTY = "structure id"
FORMULA_PROPERTY = "formula"
SUFFIX = ".chemiscope.json.gz"


@dataclass(frozen=True)
class MapColumn:
    """One value per point (NaN or "" where unknown), with what it is and its unit."""

    values: tuple[float, ...] | tuple[str, ...]
    description: str
    units: str | None = None


@dataclass(frozen=True)
class KernelMap:
    """A stored 2D embedding of a kernel's rows and what to colour it by, in point order."""

    embedding_id: int
    kernel_id: int
    method: str  # kpca or tsne
    parameters: dict[str, Any]
    run_id: int
    structure_ids: tuple[int, ...]
    points: np.ndarray  # (N, 2)
    formulas: tuple[str, ...]
    sizes: tuple[int, ...]  # sites of each structure
    # colour choices by name, in menu order: band gaps, predictions, spread, test errors
    columns: dict[str, MapColumn] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.structure_ids)
        shapes = (
            len(self.formulas),
            len(self.sizes),
            *(len(c.values) for c in self.columns.values()),
        )
        if self.points.shape != (n, 2) or any(s != n for s in shapes):
            raise ValueError(f"a kernel map of {n} points with columns of other lengths")

    @property
    def coordinates(self) -> str:
        """The name of the coordinate property: 'kernel PCA' gives 'kernel PCA[1]' and '[2]'."""
        return METHOD_NAMES.get(self.method, self.method)

    def colour(self) -> str:
        """The property the map is coloured by at first: the most labelled band gap, else the id."""
        gaps = [name for name in self.columns if name.startswith("band gap")]
        return gaps[0] if gaps else ID_PROPERTY

    def restricted(self, structure_ids: Sequence[int], who: str) -> KernelMap:
        """The same map over `structure_ids` only, in that order; `who` names them in errors."""
        position = {sid: i for i, sid in enumerate(self.structure_ids)}
        missing = [sid for sid in structure_ids if sid not in position]
        if missing:
            raise ExportError(
                f"embedding {self.embedding_id} lacks {len(missing)} of the {len(structure_ids)}"
                f" structures of {who} (first: structure {missing[0]})"
            )
        rows = [position[sid] for sid in structure_ids]

        def pick(values: tuple[Any, ...]) -> tuple[Any, ...]:
            return tuple(values[i] for i in rows)

        return replace(
            self,
            structure_ids=tuple(structure_ids),
            points=self.points[rows],
            formulas=pick(self.formulas),
            sizes=pick(self.sizes),
            columns={k: replace(c, values=pick(c.values)) for k, c in self.columns.items()},
        )


def chemiscope_structure(
    lattice: npt.ArrayLike, frac_coords: npt.ArrayLike, numbers: npt.ArrayLike
) -> dict[str, Any]:
    """One cell as chemiscope draws it: element names, cartesian x/y/z (frac @ lattice, term
    by term as every export computes it) and the 9-number cell (lattice rows a, b, c), so its
    structure panel shows the unit cell."""
    cell = np.asarray(lattice, dtype=np.float64).reshape(3, 3)
    frac = np.asarray(frac_coords, dtype=np.float64).reshape(-1, 3)
    xyz = frac[:, 0:1] * cell[0] + frac[:, 1:2] * cell[1] + frac[:, 2:3] * cell[2]
    names = [chemical_symbols[int(z)] for z in np.asarray(numbers).reshape(-1)]
    return {
        "size": len(names),
        "names": names,
        "x": xyz[:, 0].tolist(),
        "y": xyz[:, 1].tolist(),
        "z": xyz[:, 2].tolist(),
        "cell": cell.reshape(9).tolist(),
    }


def external_structures(kmap: KernelMap) -> list[dict[str, Any]]:
    """Placeholders chemiscope fetches on selection (its `loadStructure`): the size and the
    structure id, so a map of thousands of crystals stays a small file."""
    return [
        {"size": size, "data": sid}
        for sid, size in zip(kmap.structure_ids, kmap.sizes, strict=True)
    ]


def chemiscope_dataset(
    kmap: KernelMap,
    structures: Sequence[dict[str, Any]],
    name: str,
    description: str,
    extra: dict[str, MapColumn] | None = None,
) -> dict[str, Any]:
    """The map as a chemiscope dataset, built and checked by `chemiscope.create_input`:
    coordinates, structure id, formula, the colour choices and `extra`, coloured by
    `kmap.colour()`, with the unit cell shown."""
    import chemiscope  # imported on first use: it takes half a second

    method = kmap.coordinates
    origin = (
        f"{method} of kernel {kmap.kernel_id} (embedding {kmap.embedding_id}, run {kmap.run_id})"
    )
    properties: dict[str, dict[str, Any]] = {
        method: {"target": "structure", "values": kmap.points, "description": origin},
        ID_PROPERTY: {
            "target": "structure",
            "values": [float(s) for s in kmap.structure_ids],
            "description": "crystaldb structure id (/structures/ID on the web explorer)",
        },
        FORMULA_PROPERTY: {
            "target": "structure",
            "values": list(kmap.formulas),
            "description": "reduced formula",
        },
    }
    for key, column in {**kmap.columns, **(extra or {})}.items():
        entry = {
            "target": "structure",
            "values": list(column.values),
            "description": column.description,
        }
        properties[key] = entry | ({"units": column.units} if column.units else {})
    settings = chemiscope.quick_settings(
        x=f"{method}[1]", y=f"{method}[2]", map_color=kmap.colour(), periodic=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN notices: unknown values are NaN on purpose
        return chemiscope.create_input(
            structures=list(structures),
            metadata={"name": name, "description": description},
            properties=properties,
            settings=settings,
        )


def describe(kmap: KernelMap) -> str:
    """The dataset's description: what the map is and how it was computed."""
    shown = ", ".join(f"{k}={v}" for k, v in sorted(kmap.parameters.items()))
    return (
        f"{len(kmap.structure_ids)} crystals of crystaldb kernel {kmap.kernel_id} embedded in 2D"
        f" by {kmap.coordinates} (embedding {kmap.embedding_id}, run {kmap.run_id}; {shown})."
        " Nearby points have similar average-SOAP environments. Colour by a DFT band gap, a"
        " model's prediction, the models' spread or a model's error on its test split."
    )


def file_name(data: ReleaseData) -> str:
    """<release name>.chemiscope.json.gz, the name usable as a file name."""
    return (re.sub(r"[^A-Za-z0-9._-]+", "_", data.name).strip("._") or "release") + SUFFIX


def write_chemiscope(data: ReleaseData, folder: Path, kmap: KernelMap) -> None:
    """The release's members on `kmap` as one gzipped chemiscope dataset, with each cell,
    the release's split and frozen label; the same bytes for the same inputs."""
    ids = [int(m.structure_id) for m in data.members]
    kmap = kmap.restricted(ids, f"release {data.name} {data.version}")
    labels = [label_of(data, m, "chemiscope", required=False) for m in data.members]
    structures = [
        chemiscope_structure(lattice_of(m), frac_of(m), numbers_of(m)) for m in data.members
    ]
    label = data.label_property or "label"
    functional = data.label_method.get("functional")
    extra = {
        "split": MapColumn(tuple(m.split for m in data.members), "the member's split"),
        f"release {label}": MapColumn(
            tuple(NAN if v is None else v for v in labels),
            f"the release's frozen {label}" + (f" ({functional})" if functional else ""),
            data.label_unit,
        ),
    }
    name = f"{data.name} {data.version}: kernel map {kmap.embedding_id}"
    dataset = chemiscope_dataset(kmap, structures, name, describe(kmap), extra)
    write_dataset(dataset, folder / file_name(data))


def write_dataset(dataset: dict[str, Any], path: Path) -> None:
    """gzip JSON as chemiscope reads it (NaN for unknown values), with no time in the header."""
    text = json.dumps(dataset, separators=(",", ":"))
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename=path.name[: -len(".gz")], mode="wb", fileobj=raw, mtime=0) as packed,
        io.TextIOWrapper(packed, encoding="utf-8", newline="\n") as handle,
    ):
        handle.write(text)


def read_dataset(path: Path) -> dict[str, Any]:
    """A written dataset back as a dict (NaN where a value is unknown)."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


def strict_json(dataset: dict[str, Any]) -> dict[str, Any]:
    """The dataset with null for NaN, since browsers' JSON has no NaN (the page puts NaN
    back before chemiscope sees it)."""
    properties = {
        key: {
            **entry,
            "values": [
                None if isinstance(v, float) and not math.isfinite(v) else v
                for v in entry["values"]
            ],
        }
        for key, entry in dataset["properties"].items()
    }
    return {**dataset, "properties": properties}
