"""Build the one C extension (PostgreSQL page checksums); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("dbsafe.engines.postgres._pagecheck",
                             ["src/dbsafe/engines/postgres/_pagecheck.c"],
                             extra_compile_args=["-O3"])])
