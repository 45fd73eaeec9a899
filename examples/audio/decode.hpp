// Audio decoding for the example programs with FFmpeg (libavformat, libavcodec,
// libswresample; FFmpeg 5.1 API): any container and codec FFmpeg reads, the best audio stream,
// resampled to mono at 22,050 Hz and scaled by 256 (SoundNet's input convention).
//
// Not part of the header-only library: programs that use it link FFmpeg (examples/CMakeLists.txt).
#pragma once

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
}

#include <soundnet/soundnet.hpp>

#include <cmath>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

namespace audio {

struct decode_options {
  double start = 0;        // seconds from the beginning
  double duration = -1;    // seconds; < 0: to the end
  int sample_rate = 22050;
  float scale = 256.0f;    // decoded PCM in [-1, 1) times this
};

namespace detail {

inline std::string av_error(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, buf, sizeof buf);
  return buf;
}

struct format_closer {
  void operator()(AVFormatContext* f) const { avformat_close_input(&f); }
};
struct codec_closer {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct swr_closer {
  void operator()(SwrContext* s) const { swr_free(&s); }
};
struct packet_closer {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct frame_closer {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};

/// True when the Ogg file's pages do not tile it: the last page is cut short (a truncated file).
inline bool ogg_last_page_incomplete(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string d((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t i = 0;
  while (i + 27 <= d.size()) {
    if (d.compare(i, 4, "OggS") != 0) return false;  // not plain Ogg pages: leave it to the demuxer
    const std::size_t segments = static_cast<unsigned char>(d[i + 26]);
    if (i + 27 + segments > d.size()) return true;
    std::size_t size = 27 + segments;
    for (std::size_t k = 0; k < segments; ++k) size += static_cast<unsigned char>(d[i + 27 + k]);
    if (i + size > d.size()) return true;
    i += size;
  }
  return i != d.size();
}

}  // namespace detail

/// Decodes the audio of `path`. Throws soundnet::io_error naming the file for a missing or
/// unreadable file, a file FFmpeg cannot open, one without an audio stream, corrupt or
/// truncated audio data, or no audio at all in the requested range.
inline std::vector<float> decode(const std::string& path, const decode_options& o = {}) {
  using soundnet::io_error;
  if (o.start < 0 || !std::isfinite(o.start)) throw io_error(path, "the start time must be a non-negative number");
  av_log_set_level(AV_LOG_QUIET);  // errors are reported by exceptions, once, with the file name

  AVFormatContext* raw_format = nullptr;
  if (int e = avformat_open_input(&raw_format, path.c_str(), nullptr, nullptr); e < 0)
    throw io_error(path, "cannot open as audio or video: " + detail::av_error(e));
  std::unique_ptr<AVFormatContext, detail::format_closer> format(raw_format);
  if (int e = avformat_find_stream_info(format.get(), nullptr); e < 0)
    throw io_error(path, "cannot read stream information: " + detail::av_error(e));

  if (format->nb_streams == 0) throw io_error(path, "no audio or video streams found (truncated, or not a media file)");
  const AVCodec* codec = nullptr;
  const int stream_index = av_find_best_stream(format.get(), AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
  if (stream_index == AVERROR_STREAM_NOT_FOUND) throw io_error(path, "has no audio stream");
  if (stream_index < 0 || !codec) throw io_error(path, "no decoder for its audio stream: " + detail::av_error(stream_index));
  AVStream* stream = format->streams[stream_index];

  std::unique_ptr<AVCodecContext, detail::codec_closer> decoder(avcodec_alloc_context3(codec));
  if (!decoder) throw io_error(path, "out of memory");
  if (int e = avcodec_parameters_to_context(decoder.get(), stream->codecpar); e < 0)
    throw io_error(path, "bad audio stream parameters: " + detail::av_error(e));
  if (int e = avcodec_open2(decoder.get(), codec, nullptr); e < 0)
    throw io_error(path, "cannot open the " + std::string(codec->name) + " decoder: " + detail::av_error(e));

  // Resampler: the stream's layout (or a default one for its channel count) to mono.
  AVChannelLayout in_layout{};
  if (decoder->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC || decoder->ch_layout.nb_channels <= 0)
    av_channel_layout_default(&in_layout, std::max(1, decoder->ch_layout.nb_channels));
  else
    av_channel_layout_copy(&in_layout, &decoder->ch_layout);
  AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
  SwrContext* raw_swr = nullptr;
  int e = swr_alloc_set_opts2(&raw_swr, &mono, AV_SAMPLE_FMT_FLT, o.sample_rate, &in_layout, decoder->sample_fmt,
                              decoder->sample_rate, 0, nullptr);
  av_channel_layout_uninit(&in_layout);
  std::unique_ptr<SwrContext, detail::swr_closer> swr(raw_swr);
  if (e < 0 || !swr || (e = swr_init(swr.get())) < 0)
    throw io_error(path, "cannot convert its audio (" + std::to_string(decoder->sample_rate) + " Hz, " +
                             std::to_string(decoder->ch_layout.nb_channels) + " channels): " + detail::av_error(e));

  const long skip = std::lround(o.start * o.sample_rate);
  const long keep = o.duration < 0 ? -1 : std::lround(o.duration * o.sample_rate);
  std::vector<float> out;
  long produced = 0;  // samples produced since the beginning, before trimming
  std::vector<float> chunk;
  auto append = [&](const uint8_t** in, int in_samples) {
    const int capacity = swr_get_out_samples(swr.get(), in_samples) + 32;
    chunk.resize(static_cast<std::size_t>(std::max(capacity, 0)));
    uint8_t* dst = reinterpret_cast<uint8_t*>(chunk.data());
    const int n = swr_convert(swr.get(), &dst, capacity, in, in_samples);
    if (n < 0) throw io_error(path, "resampling failed: " + detail::av_error(n));
    for (int i = 0; i < n; ++i, ++produced)
      if (produced >= skip && (keep < 0 || produced < skip + keep)) out.push_back(chunk[i] * o.scale);
    return n;
  };

  std::unique_ptr<AVPacket, detail::packet_closer> packet(av_packet_alloc());
  std::unique_ptr<AVFrame, detail::frame_closer> frame(av_frame_alloc());
  auto drain = [&] {
    for (;;) {
      const int r = avcodec_receive_frame(decoder.get(), frame.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return;
      if (r < 0) throw io_error(path, "corrupt audio data: " + detail::av_error(r));
      append(const_cast<const uint8_t**>(frame->extended_data), frame->nb_samples);
      av_frame_unref(frame.get());
    }
  };
  int read = 0;
  while ((read = av_read_frame(format.get(), packet.get())) >= 0) {
    if (packet->stream_index == stream_index) {
      const int r = avcodec_send_packet(decoder.get(), packet.get());
      if (r < 0 && r != AVERROR(EAGAIN)) {
        const double at = packet->pts == AV_NOPTS_VALUE ? -1 : packet->pts * av_q2d(stream->time_base);
        av_packet_unref(packet.get());
        throw io_error(path, "corrupt audio data" + (at >= 0 ? " at " + std::to_string(at) + " s" : std::string()) +
                                 ": " + detail::av_error(r));
      }
      drain();
    }
    av_packet_unref(packet.get());
    if (keep >= 0 && produced >= skip + keep) break;  // the requested range is complete
  }
  if (read < 0 && read != AVERROR_EOF) throw io_error(path, "read error: " + detail::av_error(read));
  avcodec_send_packet(decoder.get(), nullptr);  // flush the decoder, then the resampler
  drain();
  while (append(nullptr, 0) > 0) {
  }

  // A container that announces a longer duration than the data it holds is truncated; Ogg
  // announces none, but a cut file ends inside a page.
  if (std::string(format->iformat->name).find("ogg") != std::string::npos && detail::ogg_last_page_incomplete(path))
    throw io_error(path, "truncated: the file ends inside an Ogg page");
  // The audio stream's own duration: a container's may cover a longer video stream.
  double announced = -1;
  if (stream->duration != AV_NOPTS_VALUE && stream->duration > 0)
    announced = stream->duration * av_q2d(stream->time_base);
  else if (format->nb_streams == 1 && format->duration != AV_NOPTS_VALUE)
    announced = format->duration / double(AV_TIME_BASE);
  if (announced > 0 && o.duration < 0 && o.start == 0) {
    const double got = double(produced) / o.sample_rate;
    if (got < announced - std::max(0.5, 0.1 * announced))
      throw io_error(path, "truncated: " + std::to_string(got) + " s of audio decoded, " + std::to_string(announced) +
                               " s announced");
  }
  if (out.empty())
    throw io_error(path, produced == 0 ? "contains no audio samples"
                                       : "no audio in the requested range (the audio lasts " +
                                             std::to_string(double(produced) / o.sample_rate) + " s)");
  return out;
}

}  // namespace audio
