"""Sample data generator: realistic, deterministic source files for every configured system."""

from carelake.generate.defects import DEFECT_KINDS
from carelake.generate.generator import generate
from carelake.generate.manifest import (
    MANIFEST_NAME,
    Defect,
    FileEntry,
    Manifest,
    landing_files,
    send_order,
)

__all__ = ["DEFECT_KINDS", "MANIFEST_NAME", "Defect", "FileEntry", "Manifest", "generate", "landing_files", "send_order"]
