// Waveforms from files: .npy arrays, and (with soundnet::media) any audio or video file.
#pragma once

#include <soundnet/soundnet.hpp>
#ifdef SOUNDNET_APP_WITH_MEDIA
#include <soundnet/media/audio.hpp>
#endif

#include <algorithm>
#include <filesystem>
#include <string>
#include <type_traits>
#include <vector>

namespace soundnet::app {

/// True when the programs were built with soundnet::media (FFmpeg): audio and video files.
constexpr bool with_media() {
#ifdef SOUNDNET_APP_WITH_MEDIA
  return true;
#else
  return false;
#endif
}

/// Reads a waveform .npy (float32 or float64; shape (samples,) or (1, samples)). Throws
/// io_error naming the file for any other shape, an empty array or a malformed file.
std::vector<float> read_waveform(const std::string& path);

/// Repeats a clip circularly until it has at least `samples` samples (the authors' evaluation
/// repeats short clips to 10 s this way).
void tile_circularly(std::vector<float>& wave, long samples);

/// Streams the file `path` through `stream` (a soundnet::feature_stream), calling
/// sink(j, first_step, block) as steps are ready and progress(fraction of the file) now and
/// then. Audio and video files are decoded piece by piece (memory bounded by the stream's
/// chunk, whatever the file's length); a waveform .npy is read whole. A clip shorter than
/// `min_samples` is first repeated circularly to that length. Returns the samples of the input
/// before any repetition. Errors are io_error naming the file; the stream is reset either way.
template <class Stream, class Sink, class Progress>
long stream_file(const std::string& path, long min_samples, Stream& stream, Sink&& sink, Progress&& progress) {
  using value_type = typename Stream::value_type;
  std::vector<value_type> converted;
  auto push = [&](const float* x, std::size_t n) {  // float samples into the stream's scalar type
    if constexpr (std::is_same_v<value_type, float>) {
      stream.push(x, static_cast<long>(n), sink);
    } else {
      converted.assign(x, x + n);
      stream.push(converted.data(), static_cast<long>(n), sink);
    }
  };
  long samples = 0;
  try {
    if (std::filesystem::path(path).extension() == ".npy") {
      auto wave = read_waveform(path);
      samples = static_cast<long>(wave.size());
      tile_circularly(wave, min_samples);
      push(wave.data(), wave.size());
    } else {
#ifdef SOUNDNET_APP_WITH_MEDIA
      media::audio_reader input(path);
      // The first min_samples: a shorter clip is repeated, a longer one streamed.
      std::vector<float> piece(static_cast<std::size_t>(min_samples));
      std::size_t have = 0;
      while (have < piece.size())
        if (const std::size_t n = input.read(piece.data() + have, piece.size() - have)) have += n;
        else break;
      piece.resize(have);
      tile_circularly(piece, min_samples);
      push(piece.data(), piece.size());
      const double announced = input.announced_seconds() * audio_format::sample_rate;
      piece.resize(1 << 16);
      while (const std::size_t n = input.read(piece.data(), piece.size())) {
        push(piece.data(), n);
        if (announced > 0) progress(std::min(0.99, input.samples_read() / announced));
      }
      samples = input.samples_read();
#else
      throw io_error(path, "this program was built without FFmpeg (soundnet::media): give a waveform .npy");
#endif
    }
    stream.finish(sink);
  } catch (const shape_error& e) {
    stream.reset();
    throw io_error(path, e.what());
  } catch (...) {
    stream.reset();
    throw;
  }
  return samples;
}

}  // namespace soundnet::app
