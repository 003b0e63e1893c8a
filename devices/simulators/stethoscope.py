"""Synthetic heart sounds standing in for a USB stethoscope.

:func:`write_heart_sounds` writes a 16-bit PCM WAV that the very same
:class:`devices.stethoscope.Stethoscope` opens in place of the ALSA device.

The physiology, simplified: each beat has S1 (closure of the mitral and
tricuspid valves, the "lub") and, one systole later, S2 (closure of the aortic
and pulmonary valves, the shorter and slightly higher "dub"). Both are
low-frequency damped vibrations, energy between about 20 and 200 Hz. Systole
shortens a little as the rate rises (about 0.33 s at 72/min). Breath sounds
add a faint broadband noise that swells with each inspiration (about 15
breaths a minute). Beat-to-beat intervals vary by a few percent, as they do in
a healthy person. Everything is drawn from a seeded generator: the same
arguments give the same file, byte for byte.
"""

from __future__ import annotations

import math
import os
import wave

import numpy as np
import numpy.typing as npt

Signal = npt.NDArray[np.float64]


def _burst(
    rng: np.random.Generator, rate: int, duration: float, frequencies: tuple[float, ...], decay: float
) -> Signal:
    """A damped vibration: a few low sinusoids under a fast-attack, exponential-decay envelope."""
    t = np.arange(int(duration * rate)) / rate
    attack = np.minimum(t / 0.008, 1.0)  # valves close in a few milliseconds
    envelope = attack * np.exp(-t / decay)
    tone = np.zeros_like(t)
    for frequency in frequencies:
        f = frequency * rng.uniform(0.95, 1.05)
        tone += np.sin(2 * math.pi * f * t + rng.uniform(0, 2 * math.pi))
    burst: Signal = envelope * tone / len(frequencies)
    return burst


def _band_noise(rng: np.random.Generator, n: int, rate: int, low: float, high: float) -> Signal:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    frequencies = np.fft.rfftfreq(n, 1 / rate)
    spectrum[(frequencies < low) | (frequencies > high)] = 0
    noise: Signal = np.fft.irfft(spectrum, n)
    peak = float(np.max(np.abs(noise))) or 1.0
    return noise / peak


def heart_sounds(*, bpm: float = 72, seconds: float = 5, sample_rate: int = 8000, seed: int = 0) -> Signal:
    """The synthetic phonocardiogram as floats in [-1, 1] (see :func:`write_heart_sounds`)."""
    if not 20 <= bpm <= 250:
        raise ValueError("heart rate out of the 20-250 /min range")
    if sample_rate < 4000:
        raise ValueError("sample rate too low for heart sounds (at least 4000 Hz)")
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    signal = np.zeros(n)
    period = 60.0 / bpm
    # Systole lasts about a third of the cycle at rest and shortens with rate
    # (Weissler's regression, simplified): 0.33 s at 72/min.
    systole = min(0.33 * math.sqrt(period / (60 / 72)), 0.45 * period)
    beat = rng.uniform(0.05, 0.2)
    while beat < seconds:
        s1 = _burst(rng, sample_rate, 0.12, (35, 50, 70), 0.03) * rng.uniform(0.85, 1.0)
        s2 = _burst(rng, sample_rate, 0.09, (55, 80, 110), 0.02) * rng.uniform(0.55, 0.7)
        for start, sound in ((beat, s1), (beat + systole, s2)):
            i = int(start * sample_rate)
            if i >= n:
                break
            end = min(n, i + len(sound))
            signal[i:end] += sound[: end - i]
        beat += period * rng.uniform(0.97, 1.03)
    t = np.arange(n) / sample_rate
    breathing = 0.5 * (1 + np.sin(2 * math.pi * (15 / 60) * t - math.pi / 2))
    signal += 0.04 * breathing * _band_noise(rng, n, sample_rate, 100, min(1000, sample_rate / 2 - 1))
    result: Signal = np.clip(signal, -1.0, 1.0)
    return result


def write_heart_sounds(
    path: str | os.PathLike[str],
    *,
    bpm: float = 72,
    seconds: float = 5,
    sample_rate: int = 8000,
    seed: int = 0,
    amplitude: float = 0.6,
) -> str:
    """Write synthetic heart sounds as a mono 16-bit PCM WAV and return its path.

    Usual rates are 8000, 16000 and 48000 Hz. ``amplitude`` is the loudest
    S1's fraction of full scale. The output is deterministic for given arguments.
    """
    target = os.fspath(path)
    samples = np.round(heart_sounds(bpm=bpm, seconds=seconds, sample_rate=sample_rate, seed=seed) * amplitude * 32767)
    pcm = samples.astype("<i2")
    with wave.open(target, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return target
