"""A services group's published names are what its package hands out, whatever was imported
before: a name that is also a module of the group would be replaced by that module as soon
as anything imports the module (Python sets the package attribute), and a caller of the
function would get "'module' object is not callable" — as scheduled retention once did."""

from __future__ import annotations

import importlib
import pkgutil

import dbsafe.services

GROUPS = [m.name for m in pkgutil.iter_modules(dbsafe.services.__path__) if m.ispkg]


def test_no_published_name_is_also_a_module_of_its_group():
    for group in GROUPS:
        package = importlib.import_module(f"dbsafe.services.{group}")
        modules = {m.name for m in pkgutil.iter_modules(package.__path__)}
        assert not set(package.__all__) & modules, group


def test_every_published_name_is_what_its_package_exports():
    for group in GROUPS:
        package = importlib.import_module(f"dbsafe.services.{group}")
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
        for name in package.__all__:
            assert not isinstance(getattr(package, name), type(package)), f"{group}.{name}"
