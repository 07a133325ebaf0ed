"""Security helpers shared by every process: key files and PAN tokenization."""

from fraudguard.security.keyfile import KeyFileError, load_or_create_key
from fraudguard.security.pan import CardRef, PanTokenizer

__all__ = ["CardRef", "KeyFileError", "PanTokenizer", "load_or_create_key"]
