"""Settings: the defaults (``defaults``), the validated models (``models``) and how a config file
and flags are merged over the defaults (``merging``). The names the old ``config`` module had
(``DistillConfig``, ``build_config``, ``CONFIG_TEMPLATE``...) are served from here.
"""

from .._legacy import package_getattr

__getattr__ = package_getattr(__name__)
