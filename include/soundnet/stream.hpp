// feature_stream<Model>: read-outs of a waveform of any length (hours), fed in pieces, computed
// in chunks of bounded size, equal to one forward() over the whole waveform.
//
//   soundnet::feature_stream<decltype(net)> stream(net, {"pool5"}, 60 * soundnet::audio_format::sample_rate);
//   auto sink = [&](std::size_t output, long first_step, const xt::xtensor<float, 2>& block) {
//     // block: (channels, steps), the steps [first_step, first_step + steps) of output `output`
//   };
//   while (reader has samples) stream.push(samples, count, sink);
//   stream.finish(sink);   // the last steps; the stream is then ready for another waveform
//
// How: every layer maps output step t to the input window [t*s - p, t*s - p + k). A chunk of
// the waveform that starts at a multiple of the total stride S of the deepest read-out maps
// local step t of every layer on it to global step t + offset, so the chunk computes the same
// numbers as the whole forward wherever its zero padding does not reach (the padding at the
// chunk's edges stands for real samples, except at the two ends of the waveform). Each chunk
// starts far enough left of the next steps to emit that its padding cannot reach them, and
// ends where the last step it emits has its whole receptive field; the final chunk ends at
// the end of the waveform, whose padding is genuine. The same samples then enter the same
// arithmetic: results are equal to the whole forward up to float rounding (the GEMM blocking
// may differ at chunk edges), and bit-identical when the waveform fits in one chunk.
//
// Memory: the samples held and the chunk passed to forward() are bounded by about
// chunk_samples + the receptive field of the deepest read-out + S, whatever the length of the
// waveform; max_chunk_samples() reports the largest chunk so far.
#pragma once

#ifndef SOUNDNET_INSIDE_SOUNDNET
#error "include <soundnet/soundnet.hpp> instead of soundnet/stream.hpp"
#endif

#include "core/abi.hpp"
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>
#include <xtensor/xtensor.hpp>

#include "core/error.hpp"
#include "model.hpp"

namespace soundnet {
SOUNDNET_ABI_BEGIN

template <class Model>
class feature_stream {
 public:
  using value_type = typename Model::value_type;
  using network = typename Model::network;
  using block_type = xt::xtensor<value_type, 2>;
  static constexpr std::size_t num_layers = Model::num_layers;

  /// Streams the read-outs `outputs` (names as in Model::output_names()) of `net`, which must
  /// outlive the stream; `chunk_samples`: the nominal input samples per forward (at least 1;
  /// chunks are widened to the network's minimum input and the receptive field).
  /// Throws soundnet::error for an unknown or repeated name or an empty list.
  feature_stream(Model& net, std::vector<std::string> outputs, long chunk_samples = 60L * audio_format::sample_rate)
      : net_(net), names_(std::move(outputs)), chunk_samples_(chunk_samples) {
    if (names_.empty()) throw error("feature_stream needs at least one read-out");
    if (chunk_samples_ < 1) throw error("feature_stream: chunk_samples must be at least 1");
    for (std::size_t j = 0; j < names_.size(); ++j) {
      for (std::size_t i = 0; i < j; ++i)
        if (names_[i] == names_[j]) throw error("feature_stream: read-out '" + names_[j] + "' given twice");
      depth_.push_back(net_.output_depth(names_[j]));
      channels_.push_back(net_.output_channels(names_[j]));
      if (depth_[j] > depth_[deepest_]) deepest_ = j;
      if (net_.inside_fused_block(names_[j])) keep_ = keep::all;
    }
    stride_ = total_stride(depth_[deepest_]);
    reset();
  }

  const std::vector<std::string>& outputs() const { return names_; }
  /// Channels of read-out j.
  long channels(std::size_t j) const { return channels_.at(j); }
  /// Input samples per step of read-out j.
  long output_stride(std::size_t j) const { return total_stride(depth_.at(j)); }

  /// Samples pushed since the start of the current waveform.
  long samples() const { return pushed_; }
  /// Steps of read-out j emitted so far for the current waveform.
  long steps_emitted(std::size_t j) const { return next_.at(j); }
  /// Samples held now, and the most input samples one forward() has seen (both bounded by the
  /// chunk size and the receptive field, not by the length of the waveform).
  long samples_held() const { return static_cast<long>(buffer_.size()); }
  long max_chunk_samples() const { return max_chunk_; }

  /// Forgets the current waveform.
  void reset() {
    buffer_.clear();
    buffer_start_ = 0;
    pushed_ = 0;
    max_chunk_ = 0;
    next_.assign(names_.size(), 0);
  }

  /// Appends `count` samples of the waveform and calls sink(j, first_step, block) for every
  /// block of steps of read-out j that they complete. Throws shape_error for a non-finite
  /// sample, naming its position in the waveform.
  template <class Sink>
  void push(const value_type* samples, long count, Sink&& sink) {
    for (long i = 0; i < count; ++i)
      if (!std::isfinite(samples[i]))
        throw shape_error("input has a non-finite value (NaN or Inf) at sample " + std::to_string(pushed_ + i) +
                          " (" + seconds_text(pushed_ + i) + " s)");
    buffer_.insert(buffer_.end(), samples, samples + count);
    pushed_ += count;
    for (;;) {
      const chunk c = plan(false, 0);
      if (c.end > pushed_) break;
      run(c, false, sink);
    }
    trim();
  }

  /// Ends the waveform: emits the remaining steps of every read-out, so that each has
  /// Net::lengths(samples())[depth] steps in all, then resets the stream. Throws shape_error
  /// if the waveform is shorter than the network's minimum input (the stream is reset).
  template <class Sink>
  void finish(Sink&& sink) {
    if (pushed_ < network::min_input_length()) {
      const long n = pushed_;
      reset();
      throw shape_error("input of " + std::to_string(n) + " samples is too short for " + network::name +
                        ": it needs at least " + std::to_string(network::min_input_length()) + " samples (" +
                        seconds_text(network::min_input_length()) + " s at " + std::to_string(audio_format::sample_rate) + " Hz)");
    }
    const chunk c = plan(true, pushed_);
    run(c, true, sink);
    const auto lengths = network::lengths(pushed_);
    for (std::size_t j = 0; j < names_.size(); ++j)
      if (next_[j] != lengths[depth_[j]])
        throw error("feature_stream: internal error: " + names_[j] + " has " + std::to_string(next_[j]) +
                    " steps, expected " + std::to_string(lengths[depth_[j]]));
    reset();
  }

 private:
  struct chunk {
    long begin, end;  // input samples [begin, end)
  };

  static constexpr long total_stride(std::size_t depth) {
    long s = 1;
    for (std::size_t i = 0; i < depth; ++i) s *= network::strides[i];
    return s;
  }

  // The first input sample that step `step` of the read-out at `depth` reads (may be negative:
  // the left padding).
  static long first_input(std::size_t depth, long step) {
    long lo = step;
    for (std::size_t i = depth; i-- > 0;) lo = lo * network::strides[i] - network::paddings[i];
    return lo;
  }
  // One past the last input sample that step `step` reads.
  static long end_input(std::size_t depth, long step) {
    long hi = step + 1;
    for (std::size_t i = depth; i-- > 0;) hi = (hi - 1) * network::strides[i] - network::paddings[i] + network::kernels[i];
    return hi;
  }

  static long floor_to(long x, long m) { return x >= 0 ? x / m * m : -((-x + m - 1) / m) * m; }
  static long ceil_div(long a, long b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

  // The next chunk: it starts left enough for every read-out's next step and ends where the
  // deepest read-out's next `per_chunk` steps are complete (or at the end of the waveform).
  chunk plan(bool at_end, long total) const {
    long begin = 0;
    bool first = true;
    for (std::size_t j = 0; j < names_.size(); ++j) {
      const long lo = first_input(depth_[j], next_[j]);
      begin = first ? lo : std::min(begin, lo);
      first = false;
    }
    begin = std::max(0L, floor_to(begin, stride_));
    const long min_len = network::min_input_length();
    long end;
    if (at_end) {
      end = total;
    } else {
      const long per_chunk = std::max(1L, chunk_samples_ / stride_);
      end = end_input(depth_[deepest_], next_[deepest_] + per_chunk - 1);
    }
    if (end - begin < min_len) begin = std::max(0L, floor_to(end - min_len, stride_));
    if (!at_end && end - begin < min_len) end = begin + min_len;
    return {begin, end};
  }

  template <class Sink>
  void run(const chunk& c, bool at_end, Sink& sink) {
    if (c.begin < buffer_start_ || c.end > buffer_start_ + static_cast<long>(buffer_.size()))
      throw error("feature_stream: internal error: chunk outside the samples held");
    const long n = c.end - c.begin;
    max_chunk_ = std::max(max_chunk_, n);
    net_.forward_to(buffer_.data() + (c.begin - buffer_start_), 1, n, names_[deepest_], keep_);
    const auto local = network::lengths(n);
    for (std::size_t j = 0; j < names_.size(); ++j) {
      // Steps valid in this chunk, in global indices, layer by layer.
      long lo = c.begin, hi = c.end, offset = c.begin;
      for (std::size_t i = 0; i < depth_[j]; ++i) {
        const long s = network::strides[i], p = network::paddings[i], k = network::kernels[i];
        offset /= s;
        lo = c.begin == 0 ? 0 : ceil_div(lo + p, s);
        hi = at_end ? offset + local[i + 1] : floor_to(hi - k + p, s) / s + 1;
      }
      hi = std::min(hi, offset + local[depth_[j]]);
      if (lo > next_[j])
        throw error("feature_stream: internal error: " + names_[j] + " step " + std::to_string(next_[j]) +
                    " is not valid in chunk [" + std::to_string(c.begin) + ", " + std::to_string(c.end) + ")");
      if (hi <= next_[j]) continue;
      auto out = net_.output(names_[j], next_[j] - offset, hi - next_[j]);  // (1, C, steps)
      block_type block;
      block.resize({out.shape(1), out.shape(2)});
      block.storage().swap(out.storage());  // (C, steps) without another copy
      sink(j, next_[j], static_cast<const block_type&>(block));
      next_[j] = hi;
    }
  }

  // Drops the samples no later chunk needs (the final chunk may reach back min_input_length).
  void trim() {
    const chunk next = plan(false, 0);
    const long keep_from =
        std::max(0L, std::min(next.begin, floor_to(pushed_ - network::min_input_length(), stride_)));
    if (keep_from > buffer_start_) {
      buffer_.erase(buffer_.begin(), buffer_.begin() + (keep_from - buffer_start_));
      buffer_start_ = keep_from;
    }
  }

  static std::string seconds_text(long samples) {
    const long hundredths = (samples * 100 + audio_format::sample_rate / 2) / audio_format::sample_rate;
    const long rest = hundredths % 100;
    return std::to_string(hundredths / 100) + "." + (rest < 10 ? "0" : "") + std::to_string(rest);
  }

  Model& net_;
  std::vector<std::string> names_;
  std::vector<std::size_t> depth_;
  std::vector<long> channels_;
  std::size_t deepest_ = 0;
  keep keep_ = keep::block_outputs;  // keep::all when a read-out lies inside a fused block
  long stride_ = 1;
  long chunk_samples_;
  std::vector<value_type> buffer_;  // samples [buffer_start_, pushed_)
  long buffer_start_ = 0, pushed_ = 0, max_chunk_ = 0;
  std::vector<long> next_;  // next step to emit, per read-out
};

SOUNDNET_ABI_END
}  // namespace soundnet
