"""Where samples come from: each source yields work units and the samples made of them.

``base`` has the ``SampleSource`` protocol and the ``SourceContext`` a source gets; ``slices``
(knowledge slices, read by ``reader`` and split by ``chunking``), ``topics`` (a topic tree),
``distill`` (an existing instruction set) and ``augment`` (rephrasings of kept samples) are the
modes. The names the old ``sources`` module had are served from here.
"""

from .._legacy import package_getattr

__getattr__ = package_getattr(__name__)
