"""The structure descriptors a kernel can be built on: SOAP (featomic) or MBTR (DScribe).

Both are stored and compared the same way (species-keyed blocks, `soap.AverageSpectra`; the
normalised linear kernel of `kernels.py`), so everything downstream of the descriptor is
shared; this module is where the two differ: what is computed, under which descriptor-set
kind and kernel name, and how stored hyperparameters are read back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crystaldb.core.cell import Cell
from crystaldb.core.mbtr import MbtrHypers, is_mbtr_record, mbtr_spectra
from crystaldb.core.soap import AverageSpectra, SoapHypers, average_spectra

Hypers = SoapHypers | MbtrHypers
DESCRIPTORS = ("soap", "mbtr")


@dataclass(frozen=True)
class DescriptorKind:
    """How a descriptor is named in the descriptor and kernel tables, and who computes it."""

    name: str  # as on the command line: soap, mbtr
    kind: str  # descriptor_sets.kind
    kernel: str  # kernel_matrices.kernel: the normalised linear kernel of these blocks
    library: str  # the library computing it (its version is recorded beside)


SOAP = DescriptorKind("soap", "soap-average", "average", "featomic")
MBTR = DescriptorKind("mbtr", "mbtr", "mbtr-cosine", "dscribe")
KERNEL_NAMES = (SOAP.kernel, MBTR.kernel)


def kind_of(hypers: Hypers) -> DescriptorKind:
    """SOAP's or MBTR's names."""
    return MBTR if isinstance(hypers, MbtrHypers) else SOAP


def describe(cells: Sequence[Cell], hypers: Hypers) -> AverageSpectra:
    """The stored descriptor of every cell: average SOAP spectra, or MBTR blocks."""
    if isinstance(hypers, MbtrHypers):
        return mbtr_spectra(cells, hypers)
    return average_spectra(cells, hypers)


def hypers_from_record(record: dict[str, Any]) -> Hypers:
    """Hyperparameters back from a descriptor row or a weights file, SOAP or MBTR."""
    if is_mbtr_record(record):
        return MbtrHypers.from_record(record)
    return SoapHypers(**{k: v for k, v in record.items() if k != "featomic"})


def label(record: dict[str, Any]) -> str:
    """One short line naming a descriptor and its main hyperparameters, for tables."""
    if is_mbtr_record(record):
        return (
            f"MBTR k=1,2,3 n={record['grid_n']} sigma={record['k2_sigma']}/{record['k3_sigma']}"
            f" exp({record['scale']})"
        )
    return f"SOAP {record['cutoff']}/{record['n_max']}/{record['l_max']}/{record['gaussian_width']}"
