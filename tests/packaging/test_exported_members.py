"""Every module of `batching`, `bot` and `escalation` says honestly what it exports.

In the style of httpx's ``tests/test_exported_members.py``: for each module found by
`pkgutil.walk_packages`, ``__all__`` exists, every name in it is defined in the module, and every
public top-level function or class the module itself defines (``obj.__module__`` is the module's
name, the name does not start with ``_``) is listed in it. The emulators (``sandbox``, and
``bot.sandbox`` while it still exists) and the ``bot.__main__`` entry point are left out.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

PACKAGES = ("batching", "bot", "escalation")
SKIPPED_PREFIXES = ("bot.sandbox", "sandbox")
SKIPPED_MODULES = frozenset({"bot.__main__"})


def _skipped(name: str) -> bool:
    """Whether module ``name`` is outside the check (emulators, the ``__main__`` entry point)."""
    if name in SKIPPED_MODULES:
        return True
    return any(name == prefix or name.startswith(prefix + ".") for prefix in SKIPPED_PREFIXES)


def module_names() -> list[str]:
    """Dotted names of the packages in `PACKAGES` and every module below them, sorted."""
    names: list[str] = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=package_name + "."):
            if not _skipped(info.name):
                names.append(info.name)
    return sorted(name for name in names if not _skipped(name))


def defined_public_members(module: ModuleType) -> list[str]:
    """Public top-level functions and classes defined in ``module`` itself (not imported)."""
    return sorted(
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == module.__name__
    )


@pytest.mark.parametrize("name", module_names())
def test_all_is_honest(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    undefined = sorted(member for member in exported if not hasattr(module, member))
    assert not undefined, f"{name}.__all__ names what the module does not define: {undefined}"
    missing = [member for member in defined_public_members(module) if member not in exported]
    assert not missing, f"{name} defines public members missing from __all__: {missing}"
