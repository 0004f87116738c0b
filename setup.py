"""Build the C extensions (page checksums, WAL scan, a thread's own user id); everything else
is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("dbsafe.engines.postgres._pagecheck", ["src/dbsafe/engines/postgres/_pagecheck.c"],
              extra_compile_args=["-O3"]),
    Extension("dbsafe.engines.postgres._walscan", ["src/dbsafe/engines/postgres/_walscan.c"],
              extra_compile_args=["-O3"]),
    Extension("dbsafe.engines.postgres._threadcred",
              ["src/dbsafe/engines/postgres/_threadcred.c"]),
])
