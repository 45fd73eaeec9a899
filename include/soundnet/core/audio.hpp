// SoundNet's input convention, in one place: mono waveforms at 22,050 Hz, decoded PCM in
// [-1, 1) scaled by 256 (the authors' Lua code multiplies 32-bit samples by 2^-23).
#pragma once

namespace soundnet::audio_format {

/// Samples per second of every waveform the networks read.
inline constexpr int sample_rate = 22050;

/// Decoded PCM in [-1, 1) is multiplied by this before it enters a network.
inline constexpr float scale = 256.0f;

/// Seconds of `samples` samples.
constexpr double seconds(long samples) { return static_cast<double>(samples) / sample_rate; }

/// Samples in `seconds` seconds, rounded to the nearest sample.
constexpr long samples(double seconds) {
  const double s = seconds * sample_rate;
  return static_cast<long>(s >= 0 ? s + 0.5 : s - 0.5);
}

}  // namespace soundnet::audio_format
