"""Object storage servers for tests, run for real on loopback.

- ``moto.MotoServer``: moto's S3-compatible server (``moto_server``, from pip), a subprocess;
- ``azurite.Azurite``: Microsoft's Azure Storage emulator (``azurite-blob``, from npm into
  tools/node by ``scripts/install.sh --test``), a subprocess;
- ``faults.FaultProxy``: a reverse proxy put in front of either, which answers 503 (or 429)
  for a while or for a number of requests and otherwise forwards faithfully.

``fixtures`` holds the pytest fixtures (imported by tests/conftest.py): one server of each
kind per xdist worker, and ``storage_location``, parametrised over local, s3 and azure.
"""
