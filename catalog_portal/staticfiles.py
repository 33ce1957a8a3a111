"""Collect static files only when they changed: the demo and the test suite run this before serving.

`collectstatic` with the hashed, compressed storage re-hashes every file each time (seconds); a fingerprint of the
sources (each file's path, size and modification time) lets an unchanged tree skip it in milliseconds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.management import call_command

FINGERPRINT = ".sources"


def sources_fingerprint() -> str:
    digest = hashlib.sha256()
    for finder in finders.get_finders():
        for path, storage in finder.list(["CVS", ".*", "*~"]):
            stat = Path(storage.path(path)).stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def collect_static() -> bool:
    """Run `collectstatic` (quietly) unless STATIC_ROOT already holds these sources; True when it ran."""
    root = Path(settings.STATIC_ROOT)
    marker = root / FINGERPRINT
    fingerprint = sources_fingerprint()
    manifest = root / getattr(staticfiles_storage, "manifest_name", "staticfiles.json")
    if manifest.exists() and marker.exists() and marker.read_text() == fingerprint:
        return False
    call_command("collectstatic", interactive=False, verbosity=0)
    marker.write_text(fingerprint)
    return True
