"""The one place that monkey-patches the standard library for gevent.

Import it first, before anything else, in every process that serves with gevent
(``spillway`` CLI, ``spillway.wsgi``). Patching after ``ssl`` or ``socket`` were imported
leaves modules holding unpatched references (the seed's MonkeyPatchWarning, gevent#1016).
"""

from gevent import monkey

monkey.patch_all()


def is_patched() -> bool:
    """Tell whether socket and ssl are gevent's (used by the entry-point tests)."""
    return monkey.is_module_patched("socket") and monkey.is_module_patched("ssl")
