// Feeding one input file into a soundnet::feature_stream, for the example programs.
#pragma once

#include <filesystem>
#include <string>
#include <type_traits>
#include <vector>

#include "cli.hpp"
#ifdef SOUNDNET_EXAMPLES_WITH_FFMPEG
#include "audio/decode.hpp"
#endif

namespace cli {

/// Streams the file `path` through `stream`, calling sink(j, first_step, block) as steps are
/// ready (see soundnet::feature_stream), and progress(fraction of the file) now and then.
/// Audio and video files are decoded piece by piece (memory bounded by the stream's chunk,
/// whatever the file's length); a waveform .npy is read whole. A clip shorter than
/// `min_samples` is first repeated circularly to that length. Returns the samples of the
/// input before any repetition. Errors are soundnet::io_error naming the file; the stream is
/// reset either way.
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
#ifdef SOUNDNET_EXAMPLES_WITH_FFMPEG
      audio::reader input(path);
      // The first min_samples: a shorter clip is repeated, a longer one streamed.
      std::vector<float> piece(static_cast<std::size_t>(min_samples));
      std::size_t have = 0;
      while (have < piece.size())
        if (const std::size_t n = input.read(piece.data() + have, piece.size() - have)) have += n;
        else break;
      piece.resize(have);
      tile_circularly(piece, min_samples);
      push(piece.data(), piece.size());
      const double announced = input.announced_seconds() * 22050;
      piece.resize(1 << 16);
      while (const std::size_t n = input.read(piece.data(), piece.size())) {
        push(piece.data(), n);
        if (announced > 0) progress(std::min(0.99, input.samples_read() / announced));
      }
      samples = input.samples_read();
#else
      throw soundnet::io_error(path, "this program was built without FFmpeg: give a waveform .npy");
#endif
    }
    stream.finish(sink);
  } catch (const soundnet::shape_error& e) {
    stream.reset();
    throw soundnet::io_error(path, e.what());
  } catch (...) {
    stream.reset();
    throw;
  }
  return samples;
}

}  // namespace cli
