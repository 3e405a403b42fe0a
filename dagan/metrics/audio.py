"""SyncNet's audio input: MFCCs from ``python_speech_features`` (``pip install 'dagan[eval]'``).

syncnet_python computes them with that package's defaults (25 ms windows every 10 ms, 13
coefficients from 26 mel filters, pre-emphasis 0.97, lifter 22, coefficient 0 replaced by the log
frame energy); the reference itself is used, so LSE-D and LSE-C match it by construction.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from dagan.errors import DaganError

MFCC_PACKAGE = "python_speech_features"
MISSING_MFCC = f"the lip-sync metrics need {MFCC_PACKAGE}: pip install 'dagan[eval]'"


def has_mfcc() -> bool:
    """Whether the MFCC reference package is installed."""
    return importlib.util.find_spec(MFCC_PACKAGE) is not None


def mfcc(signal: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """(frames, 13) MFCCs of a mono signal, with ``python_speech_features.mfcc``'s defaults."""
    try:
        from python_speech_features import mfcc as reference
    except ImportError:
        raise DaganError(MISSING_MFCC) from None
    return reference(np.asarray(signal), sample_rate)
