"""Preference data: loaders for published record layouts and tokenization into arrays."""

from specc.runtime.data.loaders import FORMATS, PreferenceRecord, SkippedRecordsWarning, load_preferences
from specc.runtime.data.tokenize import encode_preferences

__all__ = ["FORMATS", "PreferenceRecord", "SkippedRecordsWarning", "encode_preferences", "load_preferences"]
