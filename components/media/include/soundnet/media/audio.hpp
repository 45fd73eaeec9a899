// soundnet::media — audio of any file FFmpeg reads, decoded to SoundNet waveforms.
//
// A compiled component (CMake target soundnet::media, built where FFmpeg is found; option
// SOUNDNET_WITH_FFMPEG): this header names no FFmpeg type, so a program that uses it needs
// FFmpeg only at link time, through the target.
//
//   soundnet::media::audio_reader in("clip.mp4");         // mono, 22,050 Hz, x256
//   std::vector<float> piece(1 << 16);
//   while (std::size_t n = in.read(piece.data(), piece.size())) use(piece.data(), n);
#pragma once

#include <soundnet/core/audio.hpp>

#include <cstddef>
#include <memory>
#include <string>

namespace soundnet::media {

/// What the reader accepts, in the file and in decode_options: rates and channel counts beyond
/// these are refused (they size the resampler's filters: a corrupt header claiming 2^30 Hz
/// would otherwise cost gigabytes), and so is a decoded frame longer than max_frame_samples.
namespace limits {
inline constexpr int min_sample_rate = 1000;       // Hz
inline constexpr int max_sample_rate = 1'000'000;  // Hz
inline constexpr int max_channels = 64;            // swresample's own maximum
inline constexpr int max_frame_samples = 1 << 22;  // samples per channel in one decoded frame
}  // namespace limits

struct decode_options {
  double start = 0;                             // seconds from the beginning
  double duration = -1;                         // seconds; < 0: to the end
  int sample_rate = audio_format::sample_rate;  // output rate (mono)
  float scale = audio_format::scale;            // decoded PCM in [-1, 1) times this
};

/// Reads the audio of one file in pieces, decoded, resampled (FFmpeg's swresample, as the
/// ffmpeg program does: `ffmpeg -i F -ac 1 -ar 22050 -f f32le -` times 256, sample for sample)
/// and scaled as decode_options say: memory stays bounded by the pieces asked for, whatever
/// the length of the file. Every error is a soundnet::io_error naming the file: a missing or
/// unreadable file, a file FFmpeg cannot open, one without an audio stream, a rate or channel
/// count beyond `limits` (corrupt or exotic headers), corrupt or
/// truncated audio data (the truncation checks run when the end is reached), or no audio at
/// all in the requested range.
class audio_reader {
 public:
  explicit audio_reader(const std::string& path, const decode_options& o = {});
  ~audio_reader();
  audio_reader(audio_reader&&) noexcept;
  audio_reader& operator=(audio_reader&&) noexcept;

  const std::string& path() const;

  /// The length of the audio stream the container announces, in seconds; < 0 if unknown.
  /// Only a hint (for progress reports): the samples decoded are what counts.
  double announced_seconds() const;

  /// Samples delivered by read() so far.
  long samples_read() const;

  /// Reads up to `capacity` samples into `dst`; returns how many, 0 only at the end of the
  /// requested range. Throws io_error (naming the file) for corrupt or truncated data, and at
  /// the end when no sample at all was in the requested range.
  std::size_t read(float* dst, std::size_t capacity);

 private:
  struct state;
  std::unique_ptr<state> s_;
};

/// The FFmpeg libraries this component was built with ("libavformat 59.27.100, ...").
std::string ffmpeg_versions();

}  // namespace soundnet::media
