"""The logs of resident processes (the agent, `dbsafe serve`): stamped with their zone like
every instant dbsafe prints, and kept for their own events (the object-store SDKs log every
HTTP request at INFO (azure) or DEBUG (botocore))."""

from __future__ import annotations

import logging

SDK_LOGGERS = ("azure", "botocore", "boto3", "urllib3", "s3transfer")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"  # logging's asctime, with the host's UTC offset


def quiet_sdk_loggers() -> None:
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
