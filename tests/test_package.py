"""What the installed package must contain (the test sessions run the wheel)."""

from __future__ import annotations

import importlib.util
from importlib import resources

from ._helpers import TestCase


class PackageTests(TestCase):
    def test_py_typed_is_installed(self) -> None:
        """The package ships py.typed, so type checkers use its annotations."""
        self.assertTrue(resources.files("cleanconn").joinpath("py.typed").is_file())

    def test_pytest_plugin_is_installed(self) -> None:
        """The pytest plugin module ships with the package."""
        self.assertIsNotNone(importlib.util.find_spec("cleanconn.pytest_plugin"))
