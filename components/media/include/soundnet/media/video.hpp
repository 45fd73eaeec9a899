// soundnet::media — frames of a video, sampled at a fixed rate, as 8-bit BGR images (the order
// OpenCV and the vision teachers' specs use).
//
//   soundnet::media::frame_reader in("clip.mp4", 1.0);    // one frame per second
//   soundnet::media::video_frame f;
//   while (in.next(f)) use(f.time, f.width, f.height, f.bgr.data());
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace soundnet::media {

/// One decoded frame: `height` rows of `width` BGR pixels (3 bytes each, rows packed).
struct video_frame {
  double time = 0;  // seconds from the start of the video stream
  int width = 0, height = 0;
  std::vector<std::uint8_t> bgr;
};

/// The largest frame read, in pixels (8192 x 8192; 8K UHD is half of it): FFmpeg's decoder is
/// told so, and a larger frame is an error rather than gigabytes of buffers.
inline constexpr long long max_frame_pixels = 1LL << 26;

/// Decodes the best video stream of a file and returns one frame per 1/rate seconds: for the
/// times 0, 1/rate, 2/rate, ... the first frame shown at or after that time (as `ffmpeg -vf fps`
/// samples a stream), converted to BGR at the stream's size with libswscale. Every error is a
/// soundnet::io_error naming the file: a file FFmpeg cannot open, one without a video stream
/// (or with only a cover picture), corrupt video data, frames over max_frame_pixels.
class frame_reader {
 public:
  frame_reader(const std::string& path, double rate);
  ~frame_reader();
  frame_reader(frame_reader&&) noexcept;

  const std::string& path() const;
  /// The duration the container announces for the video stream, in seconds; < 0 if unknown.
  double announced_seconds() const;
  /// The next sampled frame; false at the end of the stream.
  bool next(video_frame& out);

 private:
  struct state;
  std::unique_ptr<state> s_;
};

}  // namespace soundnet::media
