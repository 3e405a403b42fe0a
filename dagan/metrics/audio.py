"""MFCCs computed as ``python_speech_features.mfcc`` does with its defaults (SyncNet's audio input)."""

from __future__ import annotations

import math

import numpy as np
from scipy.fft import dct


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595 * np.log10(1 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700 * (10 ** (mel / 2595.0) - 1)


def mel_filterbank(filters: int, nfft: int, sample_rate: int) -> np.ndarray:
    """(filters, nfft // 2 + 1) triangular filters on FFT bins floor((nfft + 1) f / sr), 0 Hz to Nyquist."""
    mels = np.linspace(_hz_to_mel(0), _hz_to_mel(sample_rate / 2), filters + 2)
    bins = np.floor((nfft + 1) * _mel_to_hz(mels) / sample_rate)
    bank = np.zeros((filters, nfft // 2 + 1))
    for j in range(filters):
        low, centre, high = bins[j], bins[j + 1], bins[j + 2]
        for i in range(int(low), int(centre)):
            bank[j, i] = (i - low) / (centre - low)
        for i in range(int(centre), int(high)):
            bank[j, i] = (high - i) / (high - centre)
    return bank


def mfcc(
    signal: np.ndarray,
    sample_rate: int = 16000,
    window: float = 0.025,
    step: float = 0.01,
    coefficients: int = 13,
    filters: int = 26,
    preemphasis: float = 0.97,
    lifter: int = 22,
) -> np.ndarray:
    """(frames, coefficients) MFCCs; coefficient 0 is replaced by the log frame energy."""
    signal = np.asarray(signal, dtype=np.float64)
    signal = np.append(signal[:1], signal[1:] - preemphasis * signal[:-1])
    frame_length = int(math.floor(window * sample_rate + 0.5))
    frame_step = int(math.floor(step * sample_rate + 0.5))
    nfft = 1 << (frame_length - 1).bit_length()
    count = 1 if len(signal) <= frame_length else 1 + math.ceil((len(signal) - frame_length) / frame_step)
    padded = np.concatenate([signal, np.zeros((count - 1) * frame_step + frame_length - len(signal))])
    indices = np.arange(frame_length)[None, :] + frame_step * np.arange(count)[:, None]
    frames = padded[indices]
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    tiny = np.finfo(np.float64).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, tiny, energy)
    banded = power @ mel_filterbank(filters, nfft, sample_rate).T
    banded = np.where(banded == 0, tiny, banded)
    cepstra = dct(np.log(banded), type=2, axis=1, norm="ortho")[:, :coefficients]
    cepstra *= 1 + (lifter / 2.0) * np.sin(np.pi * np.arange(coefficients) / lifter)
    cepstra[:, 0] = np.log(energy)
    return cepstra
