// The index arithmetic of the CUDA kernels, as functions that compile for the host and the
// device alike, so that tests/test_cuda_indexing.cpp checks them on the CPU (against the CPU
// device's operations) where no GPU is present. Nothing here allocates or launches.
#pragma once

#if defined(__CUDACC__)
#define SOUNDNET_HD __host__ __device__
#else
#define SOUNDNET_HD
#endif

namespace soundnet::cuda_backend::index {

/// The input position that output step t of a convolution reads through tap k (may lie in the
/// padding: outside [0, t_in)).
SOUNDNET_HD inline long conv_source(long t, long k, long stride, long padding) { return t * stride + k - padding; }

/// The input positions a tile of output steps [t0, t0 + tile) of a one-input-channel convolution
/// reads: [first, first + span), from conv_source(t0, 0) to conv_source(t0 + tile - 1, kernel - 1).
/// Output step t0 + j reads positions first + j * stride + k (the direct kernel's shared memory).
struct input_window {
  long first, span;
};
SOUNDNET_HD inline input_window direct_window(long t0, long tile, long kernel, long stride, long padding) {
  return {t0 * stride - padding, (tile - 1) * stride + kernel};
}

/// Element e of an im2col chunk (clips x (c_in * kernel) rows x width columns, row-major).
struct im2col_position {
  long clip, channel, tap, column;
};
SOUNDNET_HD inline im2col_position im2col_at(long e, long kernel, long rows, long width) {
  const long column = e % width;
  const long row = (e / width) % rows;
  return {e / (width * rows), row / kernel, row % kernel, column};
}

/// The (tap, output step) pairs through which input position i is read, for output steps in
/// [t_begin, t_end): calls f(k, t) for each, taps ascending. col2im as a gather: every input
/// gradient sums its own terms (no atomics, a fixed order).
template <class F>
SOUNDNET_HD inline void for_each_tap(long i, long kernel, long stride, long padding, long t_begin, long t_end, F&& f) {
  const long u = i + padding;  // = t * stride + k
  for (long k = u % stride; k < kernel; k += stride) {
    const long t = (u - k) / stride;
    if (t < t_begin) break;  // t falls as k grows
    if (t < t_end) f(k, t);
  }
}

/// [begin, end) of segment `s` of `segments` equal parts of `total` items (the last ones may be
/// one shorter); the segments cover [0, total) in order.
struct range {
  long begin, end;
};
SOUNDNET_HD inline range segment(long s, long segments, long total) {
  const long base = total / segments, extra = total % segments;
  const long begin = s * base + (s < extra ? s : extra);
  return {begin, begin + base + (s < extra ? 1 : 0)};
}

/// Per-channel reductions over (n, c, t) tensors: the j-th value of channel ch's n * t values.
SOUNDNET_HD inline long channel_element(long j, long ch, long c, long t) { return ((j / t) * c + ch) * t + j % t; }

/// Max-pool backward as runs: the windows whose first maximum is the same input are consecutive
/// (a window between two that share their maximum holds it too, and nothing larger), so the first
/// window of each run adds the run's gradients (in window order, as the CPU does) and writes its
/// input alone. `argmax` is a row's (t_out) indices.
SOUNDNET_HD inline bool pool_run_starts(const int* argmax, long t) { return t == 0 || argmax[t - 1] != argmax[t]; }

/// How many columns and clips one im2col chunk takes, so that clips * rows * columns stays
/// within `budget` values (at least one column of one clip).
struct chunk_plan {
  long columns, clips;
};
inline chunk_plan plan_chunks(long n, long rows, long t_out, long budget) {
  long columns = budget / (rows > 0 ? rows : 1);
  if (columns < 1) columns = 1;
  if (columns > t_out) columns = t_out;
  long clips = columns == t_out ? budget / (rows * columns > 0 ? rows * columns : 1) : 1;
  if (clips < 1) clips = 1;
  if (clips > n) clips = n;
  return {columns, clips};
}

}  // namespace soundnet::cuda_backend::index
