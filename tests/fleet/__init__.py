"""Fleet tests: simulated hosts (network and mount namespaces), see hosts.py. A package so
that this folder's conftest.py does not collide with tests/conftest.py."""
