"""moto's server (S3 and Glue on one port) with Glue's optimistic locking: UpdateTable with a
VersionId that is not the table's current version fails with ConcurrentModificationException,
as real Glue does. Stock moto ignores VersionId, so a lost update would go unnoticed.

Usage (the tests start it): python scripts/moto_server.py -H 127.0.0.1 -p PORT

With CRYPTOLAKE_MOTO_INTERLOPE=database.table, the first UpdateTable of that table finds that
another writer updated it between the caller's GetTable and its UpdateTable (the table's version
moves on, its content stays): the race Glue's VersionId exists for, made deterministic.

With CRYPTOLAKE_MOTO_BUCKETS=a,b the server starts with those buckets (the compose cluster's
lake bucket), in moto's default account and AWS_REGION (default us-east-1).
"""

import os
import sys
import threading

from moto.glue import responses
from moto.glue.exceptions import GlueClientError
from moto.server import main


class ConcurrentModificationException(GlueClientError):
    def __init__(self, message: str) -> None:
        super().__init__("ConcurrentModificationException", message)


_update_table = responses.GlueResponse.update_table
# The server is threaded: check and update under one lock, as Glue's check is atomic.
_lock = threading.Lock()


_interlope = [os.environ.get("CRYPTOLAKE_MOTO_INTERLOPE")]


def update_table(self):
    version = self.parameters.get("VersionId")
    with _lock:
        if version is not None:
            database = self.parameters.get("DatabaseName")
            name = (self.parameters.get("TableInput") or {}).get("Name")
            table = self.glue_backend.get_table(database, name)
            if _interlope[0] == f"{database}.{name}":
                _interlope[0] = None
                table.update(table.get_version(str(table._current_version)))
            current = str(table._current_version)
            if str(version) != current:
                raise ConcurrentModificationException(
                    f"Update table failed due to concurrent modifications: "
                    f"version {version} is not the current version {current}"
                )
        return _update_table(self)


responses.GlueResponse.update_table = update_table

def create_buckets() -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    region = os.environ.get("AWS_REGION", "us-east-1")
    for bucket in filter(None, os.environ.get("CRYPTOLAKE_MOTO_BUCKETS", "").split(",")):
        s3_backends[DEFAULT_ACCOUNT_ID]["global"].create_bucket(bucket.strip(), region)


if __name__ == "__main__":
    create_buckets()
    sys.exit(main())
