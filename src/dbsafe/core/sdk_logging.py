"""The object-store SDKs log every HTTP request at INFO (azure) or DEBUG (botocore): a
resident process (the agent, `dbsafe serve`) keeps its log for its own events."""

from __future__ import annotations

import logging

SDK_LOGGERS = ("azure", "botocore", "boto3", "urllib3", "s3transfer")


def quiet_sdk_loggers() -> None:
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
