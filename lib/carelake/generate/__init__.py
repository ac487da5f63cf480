"""Sample data generator: realistic, deterministic source files for every configured system."""

from carelake.generate.generator import generate
from carelake.generate.manifest import MANIFEST_NAME, Defect, FileEntry, Manifest

__all__ = ["MANIFEST_NAME", "Defect", "FileEntry", "Manifest", "generate"]
