"""The scheduler inside ``dbsafe serve``: it turns policies into jobs.

- ``due``: which scheduled runs are due now (pure: the catalog's memory + the clock);
- ``runner``: runs them with a per-server concurrency limit, queuing the rest;
- ``execute``: what one run does (self-healing type, backup, retention, drill);
- ``steps``: what a step that fails leaves (a job and the alert ``step_failed``);
- ``service``: the loop (discovery, health checks, agent supervision) and its locks.

Policies decide *when* (``dbsafe.policy``); services do the work; the scheduler only joins
them, so every run is an ordinary job that the CLI could have started.
"""
