// soundnet::media: video frames with FFmpeg (libavformat, libavcodec, libswscale).
#include <soundnet/media/video.hpp>

#include <soundnet/core/error.hpp>

#include "ffmpeg.hpp"

extern "C" {
#include <libavutil/imgutils.h>
}

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace soundnet::media {

struct frame_reader::state {
  state(const std::string& path, double rate) : path_(path), rate_(rate) {
    if (!(rate > 0) || !std::isfinite(rate)) throw io_error(path, "the frame rate must be a positive number");
    av_log_set_level(AV_LOG_QUIET);
    AVFormatContext* raw = nullptr;
    if (int e = avformat_open_input(&raw, path.c_str(), nullptr, nullptr); e < 0)
      throw io_error(path, "cannot open as video: " + detail::av_error(e));
    format_.reset(raw);
    if (int e = avformat_find_stream_info(format_.get(), nullptr); e < 0)
      throw io_error(path, "cannot read stream information: " + detail::av_error(e));
    const AVCodec* codec = nullptr;
    index_ = av_find_best_stream(format_.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (index_ == AVERROR_STREAM_NOT_FOUND) throw io_error(path, "has no video stream");
    if (index_ < 0 || !codec) throw io_error(path, "no decoder for its video stream: " + detail::av_error(index_));
    stream_ = format_->streams[index_];
    if (stream_->disposition & AV_DISPOSITION_ATTACHED_PIC)
      throw io_error(path, "has no video stream (only an attached picture)");
    for (unsigned i = 0; i < format_->nb_streams; ++i)
      if (static_cast<int>(i) != index_) format_->streams[i]->discard = AVDISCARD_ALL;  // skip other streams' packets
    decoder_.reset(avcodec_alloc_context3(codec));
    if (!decoder_) throw io_error(path, "out of memory");
    if (int e = avcodec_parameters_to_context(decoder_.get(), stream_->codecpar); e < 0)
      throw io_error(path, "bad video stream parameters: " + detail::av_error(e));
    decoder_->thread_count = 1;  // callers decode several videos in parallel
    decoder_->max_pixels = max_frame_pixels;
    if (static_cast<long long>(decoder_->width) * decoder_->height > max_frame_pixels)
      throw io_error(path, "video frames of " + std::to_string(decoder_->width) + " x " +
                               std::to_string(decoder_->height) + " pixels: over the " +
                               std::to_string(max_frame_pixels) + " pixels a frame may have (corrupt header?)");
    if (int e = avcodec_open2(decoder_.get(), codec, nullptr); e < 0)
      throw io_error(path, "cannot open the " + std::string(codec->name) + " decoder: " + detail::av_error(e));
    packet_.reset(av_packet_alloc());
    frame_.reset(av_frame_alloc());
    if (!packet_ || !frame_) throw io_error(path, "out of memory");
    start_ = stream_->start_time != AV_NOPTS_VALUE ? stream_->start_time * av_q2d(stream_->time_base) : 0.0;
  }

  double announced_seconds() const {
    if (stream_->duration != AV_NOPTS_VALUE && stream_->duration > 0) return stream_->duration * av_q2d(stream_->time_base);
    if (format_->duration != AV_NOPTS_VALUE && format_->duration > 0) return format_->duration / double(AV_TIME_BASE);
    return -1;
  }

  bool next(video_frame& out) {
    for (;;) {
      if (!receive()) return false;
      const std::int64_t ts = frame_->best_effort_timestamp;
      const double t = ts == AV_NOPTS_VALUE ? last_time_ + 1e-6 : ts * av_q2d(stream_->time_base) - start_;
      last_time_ = t;
      // A frame is shown from t until the next one; the sample at time k/rate takes the frame
      // shown then: this frame covers the sample times in [t, next frame) - approximated by
      // taking, for each sample time not yet served, the first frame at or after it.
      const double target = static_cast<double>(served_) / rate_;
      if (t + 1e-9 < target) {
        av_frame_unref(frame_.get());
        continue;
      }
      convert(out);
      out.time = t;
      ++served_;
      while (static_cast<double>(served_) / rate_ <= t + 1e-9) ++served_;  // a gap: skip times already passed
      av_frame_unref(frame_.get());
      return true;
    }
  }

  // The next decoded frame into frame_; false at the end.
  bool receive() {
    for (;;) {
      if (!ended_) {
        const int r = avcodec_receive_frame(decoder_.get(), frame_.get());
        if (r == 0) return true;
        if (r == AVERROR_EOF) return ended_ = true, false;
        if (r != AVERROR(EAGAIN)) throw io_error(path_, "corrupt video data: " + detail::av_error(r));
      } else {
        return false;
      }
      const int rd = av_read_frame(format_.get(), packet_.get());
      if (rd < 0) {
        if (rd != AVERROR_EOF) throw io_error(path_, "read error: " + detail::av_error(rd));
        avcodec_send_packet(decoder_.get(), nullptr);
        continue;
      }
      if (packet_->stream_index == index_) {
        const int e = avcodec_send_packet(decoder_.get(), packet_.get());
        if (e < 0 && e != AVERROR(EAGAIN) && e != AVERROR_INVALIDDATA) {
          av_packet_unref(packet_.get());
          throw io_error(path_, "corrupt video data: " + detail::av_error(e));
        }
        if (e == AVERROR_INVALIDDATA && ++bad_packets_ > 8) {
          av_packet_unref(packet_.get());
          throw io_error(path_, "corrupt video data: " + std::to_string(bad_packets_) + " undecodable packets");
        }
      }
      av_packet_unref(packet_.get());
    }
  }

  void convert(video_frame& out) {
    const int w = frame_->width, h = frame_->height;
    if (w <= 0 || h <= 0) throw io_error(path_, "a video frame has no size");
    if (static_cast<long long>(w) * h > max_frame_pixels)
      throw io_error(path_, "a video frame of " + std::to_string(w) + " x " + std::to_string(h) + " pixels: over the " +
                                std::to_string(max_frame_pixels) + " pixels a frame may have");
    sws_.reset(sws_getCachedContext(sws_.release(), w, h, static_cast<AVPixelFormat>(frame_->format), w, h, AV_PIX_FMT_BGR24,
                                    SWS_BILINEAR, nullptr, nullptr, nullptr));
    if (!sws_) throw io_error(path_, "cannot convert its video frames to BGR");
    // libswscale writes whole SIMD blocks: convert into rows padded and aligned for it, then pack.
    const int stride = (3 * w + 63) / 64 * 64;
    padded_.resize(static_cast<std::size_t>(stride) * static_cast<std::size_t>(h + 1) + 64);
    auto* base = reinterpret_cast<uint8_t*>((reinterpret_cast<std::uintptr_t>(padded_.data()) + 63) / 64 * 64);
    uint8_t* dst[4] = {base, nullptr, nullptr, nullptr};
    int strides[4] = {stride, 0, 0, 0};
    if (sws_scale(sws_.get(), frame_->data, frame_->linesize, 0, h, dst, strides) != h)
      throw io_error(path_, "cannot convert a video frame to BGR");
    out.width = w, out.height = h;
    out.bgr.resize(static_cast<std::size_t>(w) * static_cast<std::size_t>(h) * 3);
    for (int y = 0; y < h; ++y)
      std::copy(base + std::size_t(y) * std::size_t(stride), base + std::size_t(y) * std::size_t(stride) + 3 * w,
                out.bgr.data() + std::size_t(y) * std::size_t(3 * w));
  }

  std::string path_;
  double rate_;
  std::unique_ptr<AVFormatContext, detail::format_closer> format_;
  std::unique_ptr<AVCodecContext, detail::codec_closer> decoder_;
  std::unique_ptr<AVPacket, detail::packet_closer> packet_;
  std::unique_ptr<AVFrame, detail::frame_closer> frame_;
  std::unique_ptr<SwsContext, detail::sws_closer> sws_;
  std::vector<uint8_t> padded_;
  AVStream* stream_ = nullptr;
  int index_ = -1, bad_packets_ = 0;
  double start_ = 0, last_time_ = 0;
  long served_ = 0;
  bool ended_ = false;
};

frame_reader::frame_reader(const std::string& path, double rate) : s_(std::make_unique<state>(path, rate)) {}
frame_reader::~frame_reader() = default;
frame_reader::frame_reader(frame_reader&&) noexcept = default;
const std::string& frame_reader::path() const { return s_->path_; }
double frame_reader::announced_seconds() const { return s_->announced_seconds(); }
bool frame_reader::next(video_frame& out) { return s_->next(out); }

}  // namespace soundnet::media
