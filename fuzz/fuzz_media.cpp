// The FFmpeg decoding wrapper (soundnet::media) on mutated audio and video files: the audio is
// decoded to the end (to 20 s at most) and the video's frames are sampled. FFmpeg's own code is
// not instrumented; the wrapper's is, and every outcome must be samples or an io_error.
#include <soundnet/core/error.hpp>
#include <soundnet/media/audio.hpp>
#include <soundnet/media/video.hpp>

#include "fuzz_input.hpp"

#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = soundnet::fuzz::as_file("input.media", data, size);
  try {
    soundnet::media::decode_options o;
    o.duration = 20;
    soundnet::media::audio_reader reader(path, o);
    std::vector<float> piece(4096);
    while (reader.read(piece.data(), piece.size()) > 0) {
    }
  } catch (const soundnet::error&) {
  }
  try {
    soundnet::media::frame_reader frames(path, 1.0);
    soundnet::media::video_frame f;
    for (int i = 0; i < 30 && frames.next(f); ++i) {
    }
  } catch (const soundnet::error&) {
  }
  return 0;
}
