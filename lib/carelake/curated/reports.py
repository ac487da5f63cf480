"""Saving report figures next to the lakehouse: ``<root>/_reports/<name>`` on local disk or an
object store."""

from __future__ import annotations

import io
from typing import Any

from pyarrow import fs as pafs

from carelake.config import Config
from carelake.storage import filesystem_for, is_remote, join_uri, to_local_path

REPORTS_FOLDER = "_reports"


def save_figure(figure: Any, config: Config, name: str) -> str:
    """Write a matplotlib ``figure`` as PNG to ``<root>/_reports/<name>``; returns its URI."""
    uri = join_uri(config.root, REPORTS_FOLDER, name)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    if is_remote(uri):
        filesystem, path = filesystem_for(uri, config)
    else:
        filesystem, path = pafs.LocalFileSystem(), to_local_path(uri)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(path) as out:
        out.write(buffer.getvalue())
    return uri
