"""Re-encrypt every stored upload and output with the current key (the first of
TESSERA_FERNET_KEYS).

    python manage.py rotate_keys                 # re-encrypt; prints one summary line
    python manage.py rotate_keys --generate-key  # print a fresh key and exit

Rotation: put the new key first in TESSERA_FERNET_KEYS and keep the old ones after it,
restart, run this command, then drop the old keys. Files stored before encryption existed
are encrypted too. Exit code 1 when a file cannot be decrypted with any configured key
(each is named; nothing else is changed for it).
"""

from __future__ import annotations

import itertools
import json
import sys

from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand

from ingestion.storage import (
    StoredFileError,
    output_paths,
    reencrypt,
    stored_paths,
    upload_root,
)


class Command(BaseCommand):
    help = ("Re-encrypt every stored upload and output with the first key of "
            "TESSERA_FERNET_KEYS.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--generate-key", action="store_true",
                            help="print a new Fernet key and exit")
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def handle(self, *args, **options) -> None:
        if options["generate_key"]:
            self.stdout.write(Fernet.generate_key().decode("ascii"))
            return
        counts = {"rotated": 0, "encrypted": 0, "failed": 0}
        failures = []
        # Uploads, and the outputs computed from them (predictions, scored files).
        for path in itertools.chain(stored_paths(), output_paths()):
            try:
                counts[reencrypt(path)] += 1
            except StoredFileError as exc:
                counts["failed"] += 1
                failures.append(str(exc))
                self.stderr.write(f"error: {exc}")
        summary = {**counts, "folder": str(upload_root()), "failures": failures}
        if options["json"]:
            self.stdout.write(json.dumps(summary, sort_keys=True))
        else:
            self.stdout.write(
                f"{counts['rotated']} files re-encrypted with the current key, "
                f"{counts['encrypted']} unencrypted files encrypted, {counts['failed']} failed "
                f"({summary['folder']})")
        if failures:
            sys.exit(1)
