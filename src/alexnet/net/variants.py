"""Named variants of the network for the paper's comparisons (§3.1-§3.4, §6, §7).

Plain data (no torch), so that the command line can list them instantly.
"""

from __future__ import annotations

from typing import Iterable

from alexnet.errors import choice_error
from alexnet.published import NETWORKS

#: The 2012 paper's network (§3), the default architecture.
PAPER_ARCH = "alexnet2012"
#: Architectures the builder knows: the paper's, and the published networks whose weights ``alexnet import`` reads.
ARCHS: dict[str, str] = {PAPER_ARCH: "the 2012 paper's two-column network (§3, Figure 2)",
                         **{name: net.title for name, net in NETWORKS.items()}}
#: The variants that also apply to the published architectures (the others change the paper's network).
ARCH_VARIANTS: tuple[str, ...] = ("no-dropout", "conv6")

#: Named variants for the paper's comparisons (§3.1-§3.4, §6, §7).
VARIANTS: dict[str, str] = {
    "tanh": "tanh instead of ReLU everywhere (§3.1, Figure 1)",
    "no-lrn": "no local response normalisation (§3.3)",
    "pool2": "non-overlapping 2x2 stride-2 max-pooling instead of 3x3 stride 2 (§3.4)",
    "one-column": "one column with half the kernels in conv1-conv4; conv5 and FC full size (§3.2, footnote 2)",
    "no-dropout": "no dropout in fc6 and fc7 (§4.2)",
    "conv6": "an extra sixth conv layer over the last pooling layer (§6)",
    "no-conv3": "conv3 removed (§7: removing a middle layer)",
    "no-conv4": "conv4 removed (§7: removing a middle layer)",
}


def parse_variants(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """'tanh,no-lrn' -> ('tanh', 'no-lrn'), validated."""
    if text is None:
        return ()
    names = [v.strip() for v in (text.split(",") if isinstance(text, str) else text) if v.strip()]
    for name in names:
        if name not in VARIANTS:
            raise choice_error("variant", name, VARIANTS)
    return tuple(names)
