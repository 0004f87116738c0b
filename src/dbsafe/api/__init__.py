"""The REST API (FastAPI, ``/api/v1``, OpenAPI at ``/openapi.json``): every endpoint calls
the service layer, as the CLI does; ``dbsafe serve`` runs it beside the scheduler."""
