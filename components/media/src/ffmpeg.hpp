// Private to soundnet::media: FFmpeg helpers shared by the audio and video readers.
#pragma once

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
}

#include <string>

namespace soundnet::media {

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
struct sws_closer {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};

}  // namespace detail

}  // namespace soundnet::media
