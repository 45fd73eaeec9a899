// soundnet::media: FFmpeg (libavformat, libavcodec, libswresample; FFmpeg 5.1 API) behind
// soundnet/media/audio.hpp.
#include <soundnet/media/audio.hpp>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
}

#include <soundnet/core/error.hpp>

#include "ffmpeg.hpp"
#include <libavformat/version.h>
#include <libavcodec/version.h>
#include <libswresample/version.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

namespace soundnet::media {

namespace detail {

/// True when the Ogg file's pages do not tile it: the last page is cut short (a truncated
/// file). Reads only the page headers.
inline bool ogg_last_page_incomplete(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(0, std::ios::end);
  const long long size = static_cast<long long>(in.tellg());
  long long i = 0;
  unsigned char head[27 + 255];
  while (i + 27 <= size) {
    in.seekg(i);
    if (!in.read(reinterpret_cast<char*>(head), 27)) return true;
    if (std::memcmp(head, "OggS", 4) != 0) return false;  // not plain Ogg pages: leave it to the demuxer
    const int segments = head[26];
    if (i + 27 + segments > size) return true;
    if (!in.read(reinterpret_cast<char*>(head + 27), segments)) return true;
    long long page = 27 + segments;
    for (int k = 0; k < segments; ++k) page += head[27 + k];
    if (i + page > size) return true;
    i += page;
  }
  return i != size;
}

}  // namespace detail

struct audio_reader::state {
  state(const std::string& path, const decode_options& o) : path_(path), o_(o) {
    using soundnet::io_error;
    if (o.start < 0 || !std::isfinite(o.start)) throw io_error(path, "the start time must be a non-negative number");
    if (o.sample_rate < limits::min_sample_rate || o.sample_rate > limits::max_sample_rate)
      throw io_error(path, "the output sample rate must be " + std::to_string(limits::min_sample_rate) + " to " +
                               std::to_string(limits::max_sample_rate) + " Hz, not " + std::to_string(o.sample_rate));
    av_log_set_level(AV_LOG_QUIET);  // errors are reported by exceptions, once, with the file name

    AVFormatContext* raw_format = nullptr;
    if (int e = avformat_open_input(&raw_format, path.c_str(), nullptr, nullptr); e < 0)
      throw io_error(path, "cannot open as audio or video: " + detail::av_error(e));
    format_.reset(raw_format);
    if (int e = avformat_find_stream_info(format_.get(), nullptr); e < 0)
      throw io_error(path, "cannot read stream information: " + detail::av_error(e));

    if (format_->nb_streams == 0) throw io_error(path, "no audio or video streams found (truncated, or not a media file)");
    const AVCodec* codec = nullptr;
    stream_index_ = av_find_best_stream(format_.get(), AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    if (stream_index_ == AVERROR_STREAM_NOT_FOUND) throw io_error(path, "has no audio stream");
    if (stream_index_ < 0 || !codec)
      throw io_error(path, "no decoder for its audio stream: " + detail::av_error(stream_index_));
    stream_ = format_->streams[stream_index_];

    decoder_.reset(avcodec_alloc_context3(codec));
    if (!decoder_) throw io_error(path, "out of memory");
    if (int e = avcodec_parameters_to_context(decoder_.get(), stream_->codecpar); e < 0)
      throw io_error(path, "bad audio stream parameters: " + detail::av_error(e));
    // FFmpeg's own bound on one decoded frame (a corrupt header cannot make it allocate more).
    decoder_->max_samples = limits::max_frame_samples;
    if (int e = avcodec_open2(decoder_.get(), codec, nullptr); e < 0)
      throw io_error(path, "cannot open the " + std::string(codec->name) + " decoder: " + detail::av_error(e));
    configure(decoder_->sample_fmt, decoder_->ch_layout, decoder_->sample_rate);

    skip_ = std::lround(o.start * o.sample_rate);
    keep_ = o.duration < 0 ? -1 : std::lround(o.duration * o.sample_rate);
    packet_.reset(av_packet_alloc());
    frame_.reset(av_frame_alloc());
    if (!packet_ || !frame_) throw io_error(path, "out of memory");
  }

  const std::string& path() const { return path_; }

  /// The length of the audio stream the container announces, in seconds; < 0 if unknown.
  /// Only a hint (for progress reports): the samples decoded are what counts.
  double announced_seconds() const {
    if (stream_->duration != AV_NOPTS_VALUE && stream_->duration > 0) return stream_->duration * av_q2d(stream_->time_base);
    if (format_->nb_streams == 1 && format_->duration != AV_NOPTS_VALUE && format_->duration > 0)
      return format_->duration / double(AV_TIME_BASE);
    return -1;
  }

  /// Samples delivered by read() so far.
  long samples_read() const { return delivered_; }

  /// Reads up to `capacity` samples into `dst`; returns how many, 0 only at the end of the
  /// requested range. Throws io_error (naming the file) for corrupt or truncated data, and at
  /// the end when no sample at all was in the requested range.
  std::size_t read(float* dst, std::size_t capacity) {
    while (pending_.size() - pending_at_ < capacity && !finished_) decode_more();
    const std::size_t n = std::min(capacity, pending_.size() - pending_at_);
    std::copy(pending_.begin() + static_cast<long>(pending_at_), pending_.begin() + static_cast<long>(pending_at_ + n), dst);
    pending_at_ += n;
    if (pending_at_ == pending_.size()) pending_.clear(), pending_at_ = 0;
    delivered_ += static_cast<long>(n);
    return n;
  }

  // Decodes at least one more packet (or flushes at the end) into pending_.
  void decode_more() {
    using soundnet::io_error;
    if (pending_at_ > 0) {  // keep pending_ small: drop what was delivered
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<long>(pending_at_));
      pending_at_ = 0;
    }
    if (keep_ >= 0 && produced_ >= skip_ + keep_) return finish();  // the requested range is complete
    const int read = av_read_frame(format_.get(), packet_.get());
    if (read < 0) {
      if (read != AVERROR_EOF) throw io_error(path_, "read error: " + detail::av_error(read));
      avcodec_send_packet(decoder_.get(), nullptr);  // flush the decoder, then the resampler
      drain();
      while (append(nullptr, 0) > 0) {
      }
      return finish();
    }
    if (packet_->stream_index == stream_index_) {
      const int r = avcodec_send_packet(decoder_.get(), packet_.get());
      if (r < 0 && r != AVERROR(EAGAIN)) {
        const double at = packet_->pts == AV_NOPTS_VALUE ? -1 : packet_->pts * av_q2d(stream_->time_base);
        av_packet_unref(packet_.get());
        throw io_error(path_, "corrupt audio data" + (at >= 0 ? " at " + std::to_string(at) + " s" : std::string()) +
                                  ": " + detail::av_error(r));
      }
      av_packet_unref(packet_.get());
      drain();
    } else {
      av_packet_unref(packet_.get());
    }
  }

  void drain() {
    for (;;) {
      const int r = avcodec_receive_frame(decoder_.get(), frame_.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return;
      if (r < 0) throw soundnet::io_error(path_, "corrupt audio data: " + detail::av_error(r));
      try {
        append_frame(*frame_);
      } catch (...) {
        av_frame_unref(frame_.get());
        throw;
      }
      av_frame_unref(frame_.get());
    }
  }

  /// (Re)creates the resampler for input of this format, layout and rate, to mono at the
  /// requested rate. Rates and channel counts beyond the limits are refused before swresample
  /// sizes its filters by them (a corrupt header claiming 2^30 Hz would otherwise make it
  /// allocate gigabytes).
  void configure(int format, const AVChannelLayout& layout, int rate) {
    using soundnet::io_error;
    const int channels = layout.nb_channels;
    if (rate < limits::min_sample_rate || rate > limits::max_sample_rate)
      throw io_error(path_, "unsupported audio sample rate " + std::to_string(rate) + " Hz (corrupt header?); " +
                                std::to_string(limits::min_sample_rate) + " to " +
                                std::to_string(limits::max_sample_rate) + " Hz are read");
    if (channels > limits::max_channels)
      throw io_error(path_, "unsupported audio channel count " + std::to_string(channels) + " (corrupt header?); at most " +
                                std::to_string(limits::max_channels) + " are read");
    if (format < 0 || av_get_bytes_per_sample(static_cast<AVSampleFormat>(format)) <= 0)
      throw io_error(path_, "the audio decoder gives no sample format");
    AVChannelLayout in_layout{};  // an unspecified layout gets the default one for its channel count
    if (layout.order == AV_CHANNEL_ORDER_UNSPEC || channels <= 0)
      av_channel_layout_default(&in_layout, std::max(1, channels));
    else
      av_channel_layout_copy(&in_layout, &layout);
    AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
    SwrContext* raw_swr = nullptr;
    int e = swr_alloc_set_opts2(&raw_swr, &mono, AV_SAMPLE_FMT_FLT, o_.sample_rate, &in_layout,
                                static_cast<AVSampleFormat>(format), rate, 0, nullptr);
    av_channel_layout_uninit(&in_layout);
    swr_.reset(raw_swr);
    if (e < 0 || !swr_ || (e = swr_init(swr_.get())) < 0)
      throw io_error(path_, "cannot convert its audio (" + std::to_string(rate) + " Hz, " + std::to_string(channels) +
                                " channels): " + detail::av_error(e));
    av_channel_layout_uninit(&in_.l);
    if (av_channel_layout_copy(&in_.l, &layout) < 0) throw io_error(path_, "out of memory");
    in_format_ = format;
    in_rate_ = rate;
    in_planes_ = av_sample_fmt_is_planar(static_cast<AVSampleFormat>(format)) ? std::max(1, in_.l.nb_channels) : 1;
    in_step_ = av_get_bytes_per_sample(static_cast<AVSampleFormat>(format)) *
               (in_planes_ == 1 ? std::max(1, in_.l.nb_channels) : 1);
  }

  /// Converts one decoded frame. A stream whose format, layout or rate changes midway (broadcast
  /// streams switch between mono and stereo) gets a new resampler, the old one flushed first.
  void append_frame(const AVFrame& f) {
    if (f.format != in_format_ || f.sample_rate != in_rate_ || av_channel_layout_compare(&f.ch_layout, &in_.l) != 0) {
      while (append(nullptr, 0) > 0) {
      }
      configure(f.format, f.ch_layout, f.sample_rate);
    }
    const uint8_t* const* data = f.extended_data;
    if (!data && f.nb_samples > 0) throw soundnet::io_error(path_, "corrupt audio data: a frame without samples");
    // In pieces: the resampler's output for a piece stays small whatever the frame's length.
    constexpr int piece = 1 << 14;
    std::vector<const uint8_t*>& at = planes_;
    at.assign(static_cast<std::size_t>(in_planes_), nullptr);
    for (int done = 0; done < f.nb_samples; done += piece) {
      const int n = std::min(piece, f.nb_samples - done);
      for (int c = 0; c < in_planes_; ++c) at[std::size_t(c)] = data[c] + std::size_t(done) * std::size_t(in_step_);
      append(at.data(), n);
    }
  }

  int append(const uint8_t** in, int in_samples) {
    const int capacity = swr_get_out_samples(swr_.get(), in_samples) + 32;
    if (capacity <= 32 && in_samples > 0) throw soundnet::io_error(path_, "resampling failed: no output size");
    converted_.resize(static_cast<std::size_t>(std::max(capacity, 0)));
    uint8_t* dst = reinterpret_cast<uint8_t*>(converted_.data());
    const int n = swr_convert(swr_.get(), &dst, capacity, in, in_samples);
    if (n < 0) throw soundnet::io_error(path_, "resampling failed: " + detail::av_error(n));
    for (int i = 0; i < n; ++i, ++produced_) {
      if (produced_ >= skip_ && (keep_ < 0 || produced_ < skip_ + keep_)) {
        pending_.push_back(converted_[i] * o_.scale);
        ++kept_;
      }
    }
    return n;
  }

  // The end of the requested range: the truncation checks.
  void finish() {
    using soundnet::io_error;
    finished_ = true;
    // A container that announces a longer duration than the data it holds is truncated; Ogg
    // announces none, but a cut file ends inside a page.
    if (std::string(format_->iformat->name).find("ogg") != std::string::npos &&
        detail::ogg_last_page_incomplete(path_))
      throw io_error(path_, "truncated: the file ends inside an Ogg page");
    const double announced = announced_seconds();
    if (announced > 0 && o_.duration < 0 && o_.start == 0) {
      const double got = double(produced_) / o_.sample_rate;
      if (got < announced - std::max(0.5, 0.1 * announced))
        throw io_error(path_, "truncated: " + std::to_string(got) + " s of audio decoded, " +
                                  std::to_string(announced) + " s announced");
    }
    if (kept_ == 0)
      throw io_error(path_, produced_ == 0 ? "contains no audio samples"
                                           : "no audio in the requested range (the audio lasts " +
                                                 std::to_string(double(produced_) / o_.sample_rate) + " s)");
  }

  std::string path_;
  decode_options o_;
  std::unique_ptr<AVFormatContext, detail::format_closer> format_;
  std::unique_ptr<AVCodecContext, detail::codec_closer> decoder_;
  std::unique_ptr<SwrContext, detail::swr_closer> swr_;
  std::unique_ptr<AVPacket, detail::packet_closer> packet_;
  std::unique_ptr<AVFrame, detail::frame_closer> frame_;
  AVStream* stream_ = nullptr;
  int stream_index_ = -1;
  long skip_ = 0, keep_ = -1;
  long produced_ = 0;   // samples out of the resampler since the beginning, before trimming
  long kept_ = 0;       // samples in the requested range
  long delivered_ = 0;  // samples returned by read()
  std::vector<float> converted_, pending_;
  struct layout {
    AVChannelLayout l{};
    layout() = default;
    layout(const layout&) = delete;
    layout& operator=(const layout&) = delete;
    ~layout() { av_channel_layout_uninit(&l); }
  } in_;  // the frames' layout the resampler was set up for
  int in_format_ = -1, in_rate_ = 0;
  int in_planes_ = 1, in_step_ = 0;  // planes of a frame; bytes from one sample to the next in a plane
  std::vector<const uint8_t*> planes_;
  std::size_t pending_at_ = 0;
  bool finished_ = false;
};

audio_reader::audio_reader(const std::string& path, const decode_options& o) : s_(std::make_unique<state>(path, o)) {}
audio_reader::~audio_reader() = default;
audio_reader::audio_reader(audio_reader&&) noexcept = default;
audio_reader& audio_reader::operator=(audio_reader&&) noexcept = default;
const std::string& audio_reader::path() const { return s_->path(); }
double audio_reader::announced_seconds() const { return s_->announced_seconds(); }
long audio_reader::samples_read() const { return s_->samples_read(); }
std::size_t audio_reader::read(float* dst, std::size_t capacity) { return s_->read(dst, capacity); }

std::string ffmpeg_versions() {
  auto v = [](unsigned x) {
    return std::to_string(x >> 16) + "." + std::to_string((x >> 8) & 0xff) + "." + std::to_string(x & 0xff);
  };
  return "libavformat " + v(avformat_version()) + ", libavcodec " + v(avcodec_version()) + ", libswresample " +
         v(swresample_version());
}

}  // namespace soundnet::media
