// CPU twins of the operations (Eigen GEMM + OpenMP loops).
//
// Every operation takes the CPU context first (scratch memory) and works on raw, contiguous,
// row-major buffers with the shapes written at the end of its lines; the table's contract is
// in backend/device.hpp. Layout of activations: (N, C, T). Convolution weights: (C_out, C_in, K).
//
// Reproducibility: no result depends on the number of threads. Work is cut into blocks whose
// sizes depend on the shapes only; every reduction sums in a fixed order (per-block partial
// sums added in block order), and Eigen's products run on one thread each.
#pragma once

#ifndef SOUNDNET_INSIDE_SOUNDNET
#error "include <soundnet/soundnet.hpp> instead of soundnet/backend/cpu/ops.hpp"
#endif

#include "../../core/abi.hpp"
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "device.hpp"
#include "kernels.hpp"

namespace soundnet {
SOUNDNET_ABI_BEGIN

template <class T>
struct ops<cpu, T> {
  using context = cpu::context;
  using row_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using matrix_map = Eigen::Map<row_matrix>;
  using const_matrix_map = Eigen::Map<const row_matrix>;

  // ---- memory ---------------------------------------------------------------------------

  static void fill(context&, T* x, long size, T value) { std::fill(x, x + size, value); }
  static void copy(context&, const T* src, long size, T* dst) { std::copy(src, src + size, dst); }
  static void copy_to_host(context&, const T* src, long size, T* host_dst) { std::copy(src, src + size, host_dst); }
  static void copy_from_host(context&, const T* host_src, long size, T* dst) { std::copy(host_src, host_src + size, dst); }

  // ---- convolution: im2col + GEMM ------------------------------------------------------

  /// cols(c*K + k, t - t0) = x(c, t*S + k - P) for t in [t0, t0 + width), 0 outside the input.
  static void im2col(const T* x, const conv_geometry& g, T* cols, long t0, long width, long ld = 0) {  // x (C_in, T_in), cols (C_in*K, width), rows ld apart
    if (ld == 0) ld = width;
    const long rows = g.c_in * g.kernel;
#pragma omp parallel for schedule(static) if (width * rows > 65536)
    for (long r = 0; r < rows; ++r) {
      const long c = r / g.kernel, k = r % g.kernel;
      const T* xc = x + c * g.t_in;
      T* out = cols + r * ld - t0;  // indexed by absolute t
      // valid t: 0 <= t*S + k - P < T_in
      long t_lo = g.padding > k ? (g.padding - k + g.stride - 1) / g.stride : 0;
      long t_hi = (g.t_in - 1 + g.padding - k) >= 0 ? (g.t_in - 1 + g.padding - k) / g.stride + 1 : 0;
      t_lo = std::min(std::max(t_lo, t0), t0 + width);
      t_hi = std::max(t_lo, std::min(t_hi, t0 + width));
      std::fill(out + t0, out + t_lo, T(0));
      const T* src = xc + (t_lo * g.stride + k - g.padding);
      if (g.stride == 1) {
        std::copy(src, src + (t_hi - t_lo), out + t_lo);
      } else {
        for (long t = t_lo; t < t_hi; ++t, src += g.stride) out[t] = *src;
      }
      std::fill(out + t_hi, out + t0 + width, T(0));
    }
  }

  /// dx(c, t*S + k - P) += dcols(c*K + k, t - t0) for t in [t0, t0 + width): the adjoint of im2col.
  static void col2im_add(const T* dcols, const conv_geometry& g, T* dx, long t0, long width, long ld = 0) {  // dcols (C_in*K, width), rows ld apart; dx (C_in, T_in)
    if (ld == 0) ld = width;
#pragma omp parallel for schedule(static) if (g.c_in * width > 65536)
    for (long c = 0; c < g.c_in; ++c) {
      T* dxc = dx + c * g.t_in;
      for (long k = 0; k < g.kernel; ++k) {
        const T* src = dcols + (c * g.kernel + k) * ld - t0;  // indexed by absolute t
        long t_lo = g.padding > k ? (g.padding - k + g.stride - 1) / g.stride : 0;
        long t_hi = (g.t_in - 1 + g.padding - k) >= 0 ? (g.t_in - 1 + g.padding - k) / g.stride + 1 : 0;
        t_lo = std::max(t_lo, t0);
        t_hi = std::min(t_hi, t0 + width);
        for (long t = t_lo; t < t_hi; ++t) dxc[t * g.stride + k - g.padding] += src[t];
      }
    }
  }

  /// y = conv(x, w) + b.
  static void conv1d_forward(context& ctx, const T* x, const T* w, const T* b, T* y, const conv_geometry& g) {  // x (N, C_in, T_in), w (C_out, C_in, K), b (C_out), y (N, C_out, T_out)
    conv1d_forward_impl(ctx, x, w, y, g, affine_epilogue{nullptr, b, false});
  }

  /// Inference block: y = relu((conv(x, w) + b - mean) * gamma / sqrt(var + eps) + beta), the
  /// batch norm applied in the GEMM's epilogue (on the way out of the kernel's registers, or one
  /// pass over each output row while it is in cache).
  static void conv1d_bn_relu_forward(context& ctx, const T* x, const T* w, const T* b, const T* gamma, const T* beta,
                                     const T* mean, const T* var, double eps, T* y, const conv_geometry& g) {  // gamma, beta, mean, var (C_out)
    T* scale = ctx.scratch<T>(context::side_slot, 2 * g.c_out);
    T* shift = scale + g.c_out;
    for (long o = 0; o < g.c_out; ++o) {
      const double s = gamma[o] / std::sqrt(static_cast<double>(var[o]) + eps);
      scale[o] = static_cast<T>(s);
      shift[o] = static_cast<T>((static_cast<double>(b[o]) - mean[o]) * s + beta[o]);
    }
    conv1d_forward_impl(ctx, x, w, y, g, affine_epilogue{scale, shift, true});
  }

  /// Accumulates dw, db; writes dx (when not null).
  static void conv1d_backward(context& ctx, const T* x, const T* w, const T* dy, T* dx, T* dw, T* db,
                              const conv_geometry& g) {  // x (N, C_in, T_in), dy (N, C_out, T_out), dx like x
    const long ck = g.c_in * g.kernel;
    const long tc = chunk_columns(ck, g.t_out);
    const long chunks = (g.t_out + tc - 1) / tc;
    if (dx) std::fill(dx, dx + g.n * g.c_in * g.t_in, T(0));
    // Chunks two apart never touch the same input samples, so even and odd chunks can each
    // scatter their input gradients in parallel.
    const bool chunked = chunks > 1 && g.n * chunks >= min_chunked_items && tc * g.stride >= g.kernel - g.stride;
    if (!chunked) {  // few output steps: all clips' columns side by side, tiled GEMMs
      const long cols_n = g.n * g.t_out;
      T* cols = ctx.scratch<T>(context::main_slot, (ck + g.c_out) * cols_n);
      T* dy_all = cols + ck * cols_n;  // (C_out, N*T_out)
      for (long n = 0; n < g.n; ++n) {
        im2col(x + n * g.c_in * g.t_in, g, cols + n * g.t_out, 0, g.t_out, cols_n);
        for (long o = 0; o < g.c_out; ++o)
          std::copy(dy + (n * g.c_out + o) * g.t_out, dy + (n * g.c_out + o + 1) * g.t_out, dy_all + o * cols_n + n * g.t_out);
      }
      const_matrix_map dY(dy_all, g.c_out, cols_n);
      const_matrix_map C(cols, ck, cols_n);
      matrix_map dW(dw, g.c_out, ck);
      tiled(ctx, g.c_out, ck, tile_scratch(ck, cols_n), [&](long r0, long rows, long c0, long cn, float* scratch) {  // dW += dY cols^T
        if constexpr (std::is_same_v<T, float>)
          if (use_kernels(ck))
            return kernels::sgemm(rows, cn, cols_n, {dy_all + r0 * cols_n, cols_n, 1}, {cols + c0 * cols_n, 1, cols_n},
                                  dw + r0 * ck + c0, ck, true, scratch, ck);
        dW.block(r0, c0, rows, cn).noalias() += dY.middleRows(r0, rows) * C.middleRows(c0, cn).transpose();
      });
      for (long o = 0; o < g.c_out; ++o) {
        T s = 0;
        for (long j = 0; j < cols_n; ++j) s += dy_all[o * cols_n + j];
        db[o] += s;
      }
      if (dx) {
        T* dcols = ctx.scratch<T>(context::side_slot, ck * cols_n);
        matrix_map dC(dcols, ck, cols_n);
        const_matrix_map W(w, g.c_out, ck);
        tiled(ctx, ck, cols_n, tile_scratch(cols_n, g.c_out), [&](long r0, long rows, long c0, long cn, float* scratch) {  // dcols = W^T dY
          if constexpr (std::is_same_v<T, float>)
            if (use_kernels(cols_n))
              return kernels::sgemm(rows, cn, g.c_out, {w + r0, 1, ck}, {dy_all + c0, cols_n, 1},
                                    dcols + r0 * cols_n + c0, cols_n, false, scratch, cols_n);
          dC.block(r0, c0, rows, cn).noalias() = W.middleCols(r0, rows).transpose() * dY.middleCols(c0, cn);
        });
        for (long n = 0; n < g.n; ++n) col2im_add(dcols + n * g.t_out, g, dx + n * g.c_in * g.t_in, 0, g.t_out, cols_n);
      }
      return;
    }
    // A fixed number of reduction groups (not one per thread): group q sums its items in order
    // into its own accumulator, and the accumulators are added in group order at the end.
    const long wsize = g.c_out * ck;
    T* acc = ctx.scratch<T>(context::main_slot, reduction_groups * (wsize + g.c_out));
    std::fill(acc, acc + reduction_groups * (wsize + g.c_out), T(0));
    const int threads = ctx.threads();
    ctx.prepare_threads(threads);
#pragma omp parallel num_threads(threads)
    {
      const int id = cpu::thread_id();
      T* scratch = ctx.thread_scratch<T>(id, ck * tc + chunk_gemm_scratch(g.c_out, tc, ck));
      for (long parity = 0; parity < 2; ++parity) {
        const long half = (chunks + 1 - parity) / 2, items = g.n * half;
#pragma omp for schedule(static)
        for (long q = 0; q < reduction_groups; ++q) {
          T* my_dw = acc + q * (wsize + g.c_out);
          for (long item = q * items / reduction_groups; item < (q + 1) * items / reduction_groups; ++item) {
            const long n = item / half, c = 2 * (item % half) + parity, t0 = c * tc;
            backward_chunk(x, w, dy, dx, my_dw, my_dw + wsize, g, n, t0, std::min(tc, g.t_out - t0), scratch);
          }
        }  // implicit barrier: the odd chunks start after every even chunk is done
      }
#pragma omp for schedule(static)
      for (long i = 0; i < wsize + g.c_out; ++i) {
        T s = 0;
        for (long q = 0; q < reduction_groups; ++q) s += acc[q * (wsize + g.c_out) + i];
        (i < wsize ? dw[i] : db[i - wsize]) += s;
      }
    }
  }

  // ---- batch normalisation ---------------------------------------------------------------

  /// Training mode: normalise with batch statistics; update running statistics
  /// (momentum, unbiased variance); save mean and 1/sqrt(var + eps) for backward.
  /// With a batch_norm_sync in the context (a data-parallel run) the statistics are those of
  /// the global batch: two passes (the mean, then the squared deviations from it), each summed
  /// over the processes, so every process normalises with the same values.
  static void batch_norm_forward_train(context& ctx, const T* x, long n, long c, long t, const T* gamma,
                                       const T* beta, double eps, double momentum, T* running_mean,
                                       T* running_var, T* save_mean, T* save_invstd, T* y) {
    if (batch_norm_sync* sync = ctx.batch_norm_sync_with()) {
      batch_norm_forward_train_synced(*sync, x, n, c, t, gamma, beta, eps, momentum, running_mean, running_var,
                                      save_mean, save_invstd, y);
      return;
    }
    const double m = static_cast<double>(n) * t;
#pragma omp parallel for schedule(static)
    for (long ch = 0; ch < c; ++ch) {
      // One pass: sums of (x - shift) and its square in double; the shift (the first value)
      // keeps the variance free of cancellation when the mean is large next to the spread.
      const double shift_value = x[ch * t];
      double sum = 0, sum_sq = 0;
      for (long i = 0; i < n; ++i) {
        const T* xc = x + (i * c + ch) * t;
        double s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
        for (long j = 0; j < t; ++j) {
          const double d = static_cast<double>(xc[j]) - shift_value;
          s1 += d;
          s2 += d * d;
        }
        sum += s1, sum_sq += s2;
      }
      const double mean = shift_value + sum / m;
      const double sq = std::max(0.0, sum_sq - sum * sum / m);  // sum of squared deviations
      const double var = sq / m;
      const double invstd = 1.0 / std::sqrt(var + eps);
      save_mean[ch] = static_cast<T>(mean);
      save_invstd[ch] = static_cast<T>(invstd);
      const double unbiased = m > 1 ? sq / (m - 1) : var;
      running_mean[ch] = static_cast<T>((1 - momentum) * running_mean[ch] + momentum * mean);
      running_var[ch] = static_cast<T>((1 - momentum) * running_var[ch] + momentum * unbiased);
      normalize(x + ch * t, n, c * t, t, static_cast<T>(mean), static_cast<T>(gamma[ch] * invstd), beta[ch],
                y + ch * t);
    }
  }

  /// Inference mode: normalise with running statistics.
  static void batch_norm_forward_eval(context&, const T* x, long n, long c, long t, const T* gamma, const T* beta,
                                      const T* running_mean, const T* running_var, double eps, T* y) {
#pragma omp parallel for collapse(2) schedule(static)
    for (long i = 0; i < n; ++i) {
      for (long ch = 0; ch < c; ++ch) {
        const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[ch]) + eps);
        normalize(x + (i * c + ch) * t, 1, 0, t, running_mean[ch], static_cast<T>(gamma[ch] * invstd), beta[ch],
                  y + (i * c + ch) * t);
      }
    }
  }

  /// invstd = 1 / sqrt(var + eps) per channel (the running statistics' scale, for a backward
  /// after an inference forward).
  static void batch_norm_invstd(context&, const T* var, long c, double eps, T* invstd) {  // var, invstd (C)
    for (long ch = 0; ch < c; ++ch) invstd[ch] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(var[ch]) + eps));
  }

  /// Backward of batch norm. training: through the batch statistics (mean, invstd saved by
  /// forward); otherwise mean/invstd are the running ones and are constants.
  /// With a batch_norm_sync in the context, training mode: the sums over the batch that dx
  /// depends on are summed over the processes (dgamma and dbeta keep this process's share:
  /// the gradient all-reduce adds the rest).
  static void batch_norm_backward(context& ctx, const T* x, const T* dy, long n, long c, long t, const T* gamma,
                                  const T* mean, const T* invstd, bool training, T* dx, T* dgamma,
                                  T* dbeta) {
    if (batch_norm_sync* sync = ctx.batch_norm_sync_with(); sync && training) {
      batch_norm_backward_synced(*sync, x, dy, n, c, t, gamma, mean, invstd, dx, dgamma, dbeta);
      return;
    }
    const double m = static_cast<double>(n) * t;
#pragma omp parallel for schedule(static)
    for (long ch = 0; ch < c; ++ch) {
      const double mu = mean[ch], is = invstd[ch];
      double sum_dy = 0, sum_dy_xhat = 0;
      batch_norm_gradient_sums(x, dy, n, c, t, ch, mu, is, sum_dy, sum_dy_xhat);
      dgamma[ch] += static_cast<T>(sum_dy_xhat);
      dbeta[ch] += static_cast<T>(sum_dy);
      if (!dx) continue;
      if (training) {
        batch_norm_dx(x, dy, n, c, t, ch, mu, is, gamma[ch], sum_dy / m, sum_dy_xhat / m, dx);
      } else {
        const T a = static_cast<T>(gamma[ch] * is);
        for (long i = 0; i < n; ++i) {
          const T* dyc = dy + (i * c + ch) * t;
          T* dxc = dx + (i * c + ch) * t;
          for (long j = 0; j < t; ++j) dxc[j] = dyc[j] * a;
        }
      }
    }
  }

  // ---- ReLU, max-pool --------------------------------------------------------------------

  static void relu_forward(context&, const T* x, T* y, long size) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < size; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
  }

  /// dx = dy where y > 0 (the gradient at 0 is 0, as in PyTorch).
  static void relu_backward(context&, const T* y, const T* dy, T* dx, long size) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < size; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
  }

  /// Floor-mode max-pool over rows of length t_in; argmax (nullable) receives the index
  /// of the first maximum of each window, for backward. NaN propagates.
  static void max_pool_forward(context&, const T* x, long rows, long t_in, long kernel, long stride,
                               long t_out, T* y, std::int32_t* argmax) {  // x (rows, T_in), y (rows, T_out)
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; ++r) {
      const T* xr = x + r * t_in;
      T* yr = y + r * t_out;
      if constexpr (std::is_same_v<T, float>)
        if (!argmax && kernels::pool_row(kernel, stride, xr, t_out, yr)) continue;  // inference: vectorised
      for (long t = 0; t < t_out; ++t) {
        const long start = t * stride;
        long best = start;
        T v = xr[start];
        for (long k = 1; k < kernel; ++k) {
          const T c = xr[start + k];
          if (c > v || std::isnan(c)) {
            v = c;
            best = start + k;
            if (std::isnan(c)) break;
          }
        }
        yr[t] = v;
        if (argmax) argmax[r * t_out + t] = static_cast<std::int32_t>(best);
      }
    }
  }

  static void max_pool_backward(context&, const T* dy, const std::int32_t* argmax, long rows, long t_in,
                                long t_out, T* dx) {
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; ++r) {
      T* dxr = dx + r * t_in;
      std::fill(dxr, dxr + t_in, T(0));
      for (long t = 0; t < t_out; ++t) dxr[argmax[r * t_out + t]] += dy[r * t_out + t];
    }
  }

  // ---- loss and optimiser ----------------------------------------------------------------

  /// sum over (n, t) of KL(p || softmax(z)) over the channel axis, divided by `divisor`.
  /// grad (nullable) receives d loss / d z. Channels [c_begin, c_begin + c) of logits with
  /// c_total channels; targets (N, C, T) hold only those c channels. The (n, t) terms are
  /// summed in order, whatever the thread count.
  static double softmax_kl(context& ctx, const T* logits, long n, long c_total, long c_begin, long c, long t,
                           const T* targets, double divisor, T* grad) {  // logits (N, C_total, T), targets (N, C, T)
    double* terms = ctx.scratch<double>(context::small_slot, n * t);
#pragma omp parallel for collapse(2) schedule(static)
    for (long i = 0; i < n; ++i) {
      for (long j = 0; j < t; ++j) {
        const T* z = logits + (i * c_total + c_begin) * t + j;
        const T* p = targets + i * c * t + j;
        double zmax = -std::numeric_limits<double>::infinity();
        for (long k = 0; k < c; ++k) zmax = std::max(zmax, static_cast<double>(z[k * t]));
        double se = 0;
        for (long k = 0; k < c; ++k) se += std::exp(z[k * t] - zmax);
        const double lse = zmax + std::log(se);
        double kl = 0, psum = 0;
        for (long k = 0; k < c; ++k) {
          const double pk = p[k * t];
          psum += pk;
          if (pk > 0) kl += pk * (std::log(pk) - (z[k * t] - lse));
        }
        terms[i * t + j] = kl;
        if (grad) {
          T* gz = grad + (i * c_total + c_begin) * t + j;
          for (long k = 0; k < c; ++k)
            gz[k * t] = static_cast<T>((std::exp(z[k * t] - lse) * psum - p[k * t]) / divisor);
        }
      }
    }
    double total = 0;
    for (long i = 0; i < n * t; ++i) total += terms[i];
    return total / divisor;
  }

  /// True when x holds no NaN and no infinity.
  static bool all_finite(context&, const T* x, long size) {
    bool finite = true;
#pragma omp parallel for schedule(static) reduction(&& : finite) if (size > 65536)
    for (long i = 0; i < size; ++i) finite = finite && std::isfinite(x[i]);
    return finite;
  }

  /// One Adam step in PyTorch's formulation (bias-corrected moments; eps added to the
  /// square root of the corrected second moment). `step` counts from 1.
  static void adam_update(context&, T* param, const T* grad, T* m, T* v, long size, double lr, double beta1,
                          double beta2, double eps, long step) {
    const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
    const double bc2_sqrt = std::sqrt(1.0 - std::pow(beta2, static_cast<double>(step)));
    const T b1 = static_cast<T>(beta1), one_b1 = static_cast<T>(1 - beta1);
    const T b2 = static_cast<T>(beta2), one_b2 = static_cast<T>(1 - beta2);
    const T step_size = static_cast<T>(lr / bc1), inv_bc2 = static_cast<T>(bc2_sqrt), e = static_cast<T>(eps);
#pragma omp parallel for schedule(static)
    for (long i = 0; i < size; ++i) {
      const T g = grad[i];
      m[i] = m[i] * b1 + g * one_b1;
      v[i] = v[i] * b2 + g * g * one_b2;
      const T denom = std::sqrt(v[i]) / inv_bc2 + e;
      param[i] -= step_size * (m[i] / denom);
    }
  }

 private:
  /// Fewer (clip, chunk) items than this: one tiled GEMM over all clips' columns instead.
  static constexpr long min_chunked_items = 8;
  /// Partial sums of a chunked convolution backward (fixed: results must not depend on threads).
  static constexpr long reduction_groups = 16;
  /// Tiles of the whole-batch GEMMs: every tile sums over the full inner dimension in one call.
  static constexpr long tile_rows = 64, tile_cols = 256;  // fixed (Eigen), enough tiles for the threads on SoundNet's layers

  /// True when a float32 GEMM whose full product has `shape_n` columns runs on the run-time
  /// kernels (kernels.hpp): always for few columns (dot products, faster than Eigen there), and
  /// otherwise when this unit's Eigen is compiled for less than the processor offers (a plain
  /// build on an AVX2 or AVX-512 machine). A unit built for the processor (-march=native) keeps
  /// Eigen's GEMM, which its flags already make fast.
  static bool use_kernels(long shape_n) {
    if constexpr (!std::is_same_v<T, float>) {
      (void)shape_n;
      return false;
    } else {
      return shape_n <= 8 || kernels_everywhere();
    }
  }
  static bool kernels_everywhere() {
    if constexpr (!std::is_same_v<T, float>) return false;
    else return active_cpu_kernels() != translation_unit_kernels();
  }

  /// Calls f(r0, rows, c0, cols, scratch) for the tiles of a (rows x cols) result, in parallel;
  /// scratch: `scratch_floats` floats of the running thread (for the GEMM's packed panels).
  template <class F>
  static void tiled(context& ctx, long rows, long cols, long scratch_floats, const F& f) {
    long tr = tile_rows, tcl = tile_cols;
    const int threads = ctx.threads();
    if (kernels_everywhere()) {
      // The run-time kernels sum every element the same way whatever the tile (kernels::sgemm's
      // shape_n), so the tiles may follow the thread count: about two per thread. (Eigen's
      // blocking depends on the tile's shape: its tiles stay fixed.)
      // Columns first (each tile packs its own columns of B once), at least 128 a tile.
      const long want = 2L * threads;
      const long ct_want = std::max(1L, std::min(want, cols / 128));
      tcl = ((cols + ct_want - 1) / ct_want + 31) / 32 * 32;
      const long rt_want = (want + ct_want - 1) / ct_want;
      tr = std::max(16L, ((rows + rt_want - 1) / rt_want + 15) / 16 * 16);
    }
    const long rt = (rows + tr - 1) / tr, ct = (cols + tcl - 1) / tcl;
    ctx.prepare_threads(threads);
#pragma omp parallel num_threads(threads) if (rt * ct > 1)
    {
      const int id = cpu::thread_id();
      float* scratch = scratch_floats > 0 ? ctx.thread_scratch<float>(id, static_cast<std::size_t>(scratch_floats)) : nullptr;
#pragma omp for schedule(dynamic)
      for (long i = 0; i < rt * ct; ++i) {
        const long r0 = (i / ct) * tr, c0 = (i % ct) * tcl;
        f(r0, std::min(tr, rows - r0), c0, std::min(tcl, cols - c0), scratch);
      }
    }
  }

  /// Scratch floats of one GEMM tile of the whole-batch paths.
  static long tile_scratch(long n, long k) {
    if constexpr (std::is_same_v<T, float>) return kernels::sgemm_scratch(tile_rows, std::min(n, 512L), k);
    return 0;
  }

  /// Output columns per block of the blocked im2col: about 64K values of `cols`, which stay
  /// in the L2 cache while the GEMM reads them.
  static long chunk_columns(long ck, long t_out) {
    return std::min(t_out, std::max(32L, 65536L / ck));
  }

  /// What the forward convolution does to each output row o: y = relu?(y * scale[o] + shift[o])
  /// (a null scale is 1, a null shift 0): the bias alone, or the inference block's batch norm
  /// and ReLU.
  struct affine_epilogue {
    const T* scale;
    const T* shift;
    bool relu;
    void operator()(T* row, long o, long width) const {
      const T so = scale ? scale[o] : T(1), ho = shift ? shift[o] : T(0);
      for (long j = 0; j < width; ++j) {
        const T v = row[j] * so + ho;
        row[j] = relu ? (v > T(0) ? v : T(0)) : v;
      }
    }
  };
  /// The same for the float kernels (kernels.hpp), applied in registers.
  static kernels::row_epilogue kernel_epilogue(const affine_epilogue& ep) {
    if constexpr (std::is_same_v<T, float>) return {ep.scale, ep.shift, ep.relu};
    else return {};
  }

  /// Blocked convolution: the output of each clip is cut into chunks of columns; each chunk's
  /// im2col fits in cache and one GEMM computes (C_out, chunk); chunks run in parallel. Where a
  /// clip is one chunk (few output steps, many weights: conv6 and up), all clips' columns go
  /// side by side into one GEMM, so the weights are read once, and the tiles run in parallel.
  /// `ep` finishes each output row (in the kernels' registers where they run).
  static void conv1d_forward_impl(context& ctx, const T* x, const T* w, T* y, const conv_geometry& g,
                                  const affine_epilogue& ep) {
    const long ck = g.c_in * g.kernel;
    const long tc = chunk_columns(ck, g.t_out);
    const long chunks = (g.t_out + tc - 1) / tc;
    const bool chunked = chunks > 1 && g.n * chunks >= min_chunked_items;
    if constexpr (std::is_same_v<T, float>) {
      long lanes = 0, rows = 0;
      kernels::direct_shape(active_cpu_kernels(), lanes, rows);
      if (g.c_in == 1 && g.c_out % rows == 0) return conv1d_direct_single_channel(ctx, x, w, y, g, ep);
      if (g.t_out >= packed_min_steps && use_packed_convolution()) return conv1d_packed_chunks(ctx, x, w, y, g, ep);
    }
    const_matrix_map W(w, g.c_out, ck);
    using strided_map = Eigen::Map<row_matrix, 0, Eigen::OuterStride<>>;
    if (chunked) {
      const int threads = ctx.threads();
      ctx.prepare_threads(threads);
#pragma omp parallel num_threads(threads)
      {
        const int id = cpu::thread_id();
        T* cols = ctx.thread_scratch<T>(id, ck * tc);
#pragma omp for schedule(dynamic)
        for (long item = 0; item < g.n * chunks; ++item) {
          const long n = item / chunks, t0 = (item % chunks) * tc, width = std::min(tc, g.t_out - t0);
          im2col(x + n * g.c_in * g.t_in, g, cols, t0, width);
          T* out = y + n * g.c_out * g.t_out + t0;
          strided_map Y(out, g.c_out, width, Eigen::OuterStride<>(g.t_out));
          Y.noalias() = W * const_matrix_map(cols, ck, width);
          for (long o = 0; o < g.c_out; ++o) ep(out + o * g.t_out, o, width);
        }
      }
    } else {  // few output steps: all clips' columns side by side, tiled GEMM (weights read once)
      const long cols_n = g.n * g.t_out;
      T* cols = ctx.scratch<T>(context::main_slot, (ck + (g.n > 1 ? g.c_out : 0)) * cols_n);
      T* out = g.n > 1 ? cols + ck * cols_n : y;  // one clip: its output is the product
      for (long n = 0; n < g.n; ++n) im2col(x + n * g.c_in * g.t_in, g, cols + n * g.t_out, 0, g.t_out, cols_n);
      matrix_map Y(out, g.c_out, cols_n);
      const_matrix_map C(cols, ck, cols_n);
      const bool fused = use_kernels(cols_n);
      const kernels::row_epilogue kep = kernel_epilogue(ep);
      tiled(ctx, g.c_out, cols_n, tile_scratch(cols_n, ck), [&](long r0, long rows, long c0, long cn, float* scratch) {
        if constexpr (std::is_same_v<T, float>)
          if (fused) {
            const kernels::row_epilogue tile_ep = kep.rows_from(r0);
            return kernels::sgemm(rows, cn, ck, {w + r0 * ck, ck, 1}, {cols + c0, cols_n, 1}, out + r0 * cols_n + c0,
                                  cols_n, false, scratch, cols_n, &tile_ep);
          }
        Y.block(r0, c0, rows, cn).noalias() = W.middleRows(r0, rows) * C.middleCols(c0, cn);
        for (long o = r0; o < r0 + rows; ++o) ep(out + o * cols_n + c0, o, cn);
      });
      if (g.n > 1)
        for (long n = 0; n < g.n; ++n)
          for (long o = 0; o < g.c_out; ++o)
            std::copy(out + o * cols_n + n * g.t_out, out + o * cols_n + (n + 1) * g.t_out,
                      y + (n * g.c_out + o) * g.t_out);
    }
  }

  /// Whether the forward of float with many output steps runs on the run-time kernels with
  /// operands packed once (conv1d_packed_chunks) rather than on Eigen over im2col: wherever the
  /// run-time kernels have a vector variant (or this unit's Eigen is built for less than the
  /// processor has). In benchmarks/ it beats Eigen built with -march=native on SoundNet's conv2-5.
  static bool use_packed_convolution() {
    if constexpr (!std::is_same_v<T, float>) return false;
    else return active_cpu_kernels() != cpu_kernels::generic || kernels_everywhere();
  }
  /// Output steps from which the packed forward runs (fewer: the tiled GEMM over all clips).
  static constexpr long packed_min_steps = 64;

  /// The chunked forward on the run-time kernels: the input is split into its S stride phases
  /// (phase p holds x(i*S + p - P)), so each row (c, k) of a chunk's im2col is a contiguous
  /// copy from phase k % S at offset k / S, written straight into the GEMM's packed column
  /// slivers; the weights are packed once for all chunks, and the epilogue runs in registers.
  static void conv1d_packed_chunks(context& ctx, const float* x, const float* w, float* y, const conv_geometry& g,
                                   const affine_epilogue& ep) {
    const cpu_kernels variant = active_cpu_kernels();
    const long nr = kernels::packed_block(variant).nr;
    const long S = g.stride, K = g.kernel, P = g.padding, ck = g.c_in * K;
    // Chunks of columns: at most chunk_columns, and small enough for about four per thread.
    // (Every output is summed the same way whatever the chunk, so they may follow the threads.)
    const int threads = ctx.threads();
    long tc = (chunk_columns(ck, g.t_out) + nr - 1) / nr * nr;
    while (tc > 2 * nr && g.n * ((g.t_out + tc - 1) / tc) < 4L * threads) tc = (tc / 2 + nr - 1) / nr * nr;
    const long chunks = (g.t_out + tc - 1) / tc;
    const long span = chunks * tc + (K - 1) / S + 1;  // a phase's length, with room for the last sliver
    const long phase_size = g.n * g.c_in * S * span;
    float* phases = ctx.scratch<float>(context::main_slot, phase_size + kernels::packed_a_size(variant, g.c_out, ck));
    float* ap = phases + phase_size;
    kernels::pack_a_whole(variant, w, ck, g.c_out, ck, ap);
#pragma omp parallel for schedule(static) if (phase_size > 65536)
    for (long q = 0; q < g.n * g.c_in * S; ++q) {  // q = (n * c_in + c) * S + p
      const long p = q % S;
      const float* xc = x + (q / S) * g.t_in;
      float* ph = phases + q * span;
      for (long i = 0; i < span; ++i) {
        const long j = i * S + p - P;
        ph[i] = j >= 0 && j < g.t_in ? xc[j] : 0.0f;
      }
    }
    const kernels::row_epilogue kep = kernel_epilogue(ep);
    ctx.prepare_threads(threads);
#pragma omp parallel num_threads(threads)
    {
      float* bp = ctx.thread_scratch<float>(cpu::thread_id(), static_cast<std::size_t>(ck * tc));
#pragma omp for schedule(dynamic)
      for (long item = 0; item < g.n * chunks; ++item) {
        const long n = item / chunks, t0 = (item % chunks) * tc, width = std::min(tc, g.t_out - t0);
        const float* xn = phases + n * g.c_in * S * span;
        for (long t = 0; t < width; t += nr) {  // sliver t: columns [t0 + t, t0 + t + nr), rows (c, k)
          float* o = bp + t * ck;
          for (long c = 0; c < g.c_in; ++c)
            for (long k = 0; k < K; ++k, o += nr)
              std::memcpy(o, xn + (c * S + k % S) * span + t0 + t + k / S, sizeof(float) * static_cast<std::size_t>(nr));
        }
        kernels::sgemm_packed(variant, g.c_out, width, ck, ap, bp, y + n * g.c_out * g.t_out + t0, g.t_out, &kep);
      }
    }
  }

  /// Backward of output columns [t0, t0 + width) of clip n: dw += dY cols^T, db += rows of dY,
  /// and (dx not null) dx += col2im(W^T dY). cols: C_in*K*width scratch values.
  static void backward_chunk(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, const conv_geometry& g,
                             long n, long t0, long width, T* cols) {
    const long ck = g.c_in * g.kernel;
    const T* dyn = dy + n * g.c_out * g.t_out + t0;  // (C_out, width), rows t_out apart
    im2col(x + n * g.c_in * g.t_in, g, cols, t0, width);
    for (long o = 0; o < g.c_out; ++o) {
      T s = 0;
      for (long j = 0; j < width; ++j) s += dyn[o * g.t_out + j];
      db[o] += s;
    }
    if constexpr (std::is_same_v<T, float>) if (kernels_everywhere()) {
      float* scratch = cols + ck * chunk_columns(ck, g.t_out);  // after the largest chunk's columns
      kernels::sgemm(g.c_out, ck, width, {dyn, g.t_out, 1}, {cols, 1, width}, dw, ck, true, scratch);  // dW += dY cols^T
      if (dx) {
        kernels::sgemm(ck, width, g.c_out, {w, 1, ck}, {dyn, g.t_out, 1}, cols, width, false, scratch);  // cols = W^T dY
        col2im_add(cols, g, dx + n * g.c_in * g.t_in, t0, width);
      }
      return;
    }
    {
      using strided = Eigen::Map<const row_matrix, 0, Eigen::OuterStride<>>;
      strided dY(dyn, g.c_out, width, Eigen::OuterStride<>(g.t_out));
      matrix_map dW(dw, g.c_out, ck);
      dW.noalias() += dY * const_matrix_map(cols, ck, width).transpose();
      if (dx) {
        matrix_map dcols(cols, ck, width);
        dcols.noalias() = const_matrix_map(w, g.c_out, ck).transpose() * dY;
        col2im_add(cols, g, dx + n * g.c_in * g.t_in, t0, width);
      }
    }
  }

  /// Scratch floats of the GEMMs of one chunk (float; 0 for double, which uses Eigen).
  static long chunk_gemm_scratch(long c_out, long tc, long ck) {
    if constexpr (std::is_same_v<T, float>)
      return std::max({kernels::sgemm_scratch(c_out, tc, ck), kernels::sgemm_scratch(c_out, ck, tc),
                       kernels::sgemm_scratch(ck, tc, c_out)});
    return 0;
  }

  // ---- direct kernel for one input channel (conv1) --------------------------------------

  /// y(o, t) = sum_k w(o, k) x(t*S + k - P) for one input channel. The padded input is split
  /// into S phases, phase p holding x(i*S + p - P), so each tap k reads a contiguous vector of
  /// phase k % S at offset k / S; `rows` output channels x `lanes` steps accumulate in registers
  /// (AVX-512: 16 x 16, AVX2: 8 x 8, generic: 8 x 4; kernels.hpp). Weights are repacked as
  /// (C_out / rows, K, rows) for contiguous broadcasts.
  static void conv1d_direct_single_channel(context& ctx, const float* x, const float* w, float* y,
                                           const conv_geometry& g, const affine_epilogue& ep) {
    const cpu_kernels variant = active_cpu_kernels();
    long lanes = 0, rows = 0;
    kernels::direct_shape(variant, lanes, rows);
    const long S = g.stride, K = g.kernel, P = g.padding;
    const long blocks = (g.t_out + lanes - 1) / lanes;
    const long span = blocks * lanes + (K - 1) / S + 1;  // phase length, with over-read room
    const long row_blocks = g.c_out / rows;
    const long phase_size = g.n * S * span, packed_size = g.c_out * K;
    float* phases = ctx.scratch<float>(context::main_slot, phase_size + packed_size);
    float* packed = phases + phase_size;
    for (long ob = 0; ob < row_blocks; ++ob)
      for (long k = 0; k < K; ++k)
        for (long r = 0; r < rows; ++r) packed[(ob * K + k) * rows + r] = w[(ob * rows + r) * K + k];
#pragma omp parallel for collapse(2) schedule(static)
    for (long n = 0; n < g.n; ++n)
      for (long p = 0; p < S; ++p) {
        float* ph = phases + (n * S + p) * span;
        const float* xn = x + n * g.t_in;
        for (long i = 0; i < span; ++i) {
          const long j = i * S + p - P;
          ph[i] = j >= 0 && j < g.t_in ? xn[j] : 0.0f;
        }
      }
    const kernels::row_epilogue kep = kernel_epilogue(ep);
    constexpr long blocks_per_task = 16;
    const long tasks_per_row_block = (blocks + blocks_per_task - 1) / blocks_per_task;
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (long n = 0; n < g.n; ++n)
      for (long task = 0; task < row_blocks * tasks_per_row_block; ++task) {
        const long ob = task / tasks_per_row_block;
        const long b_begin = (task % tasks_per_row_block) * blocks_per_task;
        const long b_end = std::min(blocks, b_begin + blocks_per_task);
        float* out = y + n * g.c_out * g.t_out;
        kernels::direct_task(variant, phases + n * S * span, span, S, K, packed + ob * K * rows, b_begin, b_end,
                             g.t_out, out, ob, &kep);
      }
  }

  // y = (x - mean) * scale + beta over n rows of length t, `stride` apart. Subtracting the
  // mean first keeps the absolute error small near 0, where the following ReLU decides.
  // Per channel: sum over the batch and time of f(channel, x) (double).
  template <class F>
  static void channel_sums(const T* x, long n, long c, long t, double* out, F f) {
#pragma omp parallel for schedule(static)
    for (long ch = 0; ch < c; ++ch) {
      double sum = 0;
      for (long i = 0; i < n; ++i) {
        const T* xc = x + (i * c + ch) * t;
        double s1 = 0;
#pragma omp simd reduction(+ : s1)
        for (long j = 0; j < t; ++j) s1 += f(ch, static_cast<double>(xc[j]));
        sum += s1;
      }
      out[ch] = sum;
    }
  }

  static void batch_norm_forward_train_synced(batch_norm_sync& sync, const T* x, long n, long c, long t,
                                              const T* gamma, const T* beta, double eps, double momentum,
                                              T* running_mean, T* running_var, T* save_mean, T* save_invstd, T* y) {
    std::vector<double> sums(static_cast<std::size_t>(c) + 1);
    channel_sums(x, n, c, t, sums.data(), [](long, double v) { return v; });
    sums[static_cast<std::size_t>(c)] = static_cast<double>(n) * t;  // this process's values per channel
    sync.sum(sums.data(), c + 1);
    const double m = sums[static_cast<std::size_t>(c)];
    std::vector<double> mean(static_cast<std::size_t>(c)), sq(static_cast<std::size_t>(c));
    for (long ch = 0; ch < c; ++ch) mean[std::size_t(ch)] = sums[std::size_t(ch)] / m;
    const double* mu = mean.data();
    channel_sums(x, n, c, t, sq.data(), [mu](long ch, double v) { return (v - mu[ch]) * (v - mu[ch]); });
    sync.sum(sq.data(), c);
#pragma omp parallel for schedule(static)
    for (long ch = 0; ch < c; ++ch) {
      const double var = sq[std::size_t(ch)] / m;
      const double invstd = 1.0 / std::sqrt(var + eps);
      const double unbiased = m > 1 ? sq[std::size_t(ch)] / (m - 1) : var;
      save_mean[ch] = static_cast<T>(mu[ch]);
      save_invstd[ch] = static_cast<T>(invstd);
      running_mean[ch] = static_cast<T>((1 - momentum) * running_mean[ch] + momentum * mu[ch]);
      running_var[ch] = static_cast<T>((1 - momentum) * running_var[ch] + momentum * unbiased);
      normalize(x + ch * t, n, c * t, t, static_cast<T>(mu[ch]), static_cast<T>(gamma[ch] * invstd), beta[ch],
                y + ch * t);
    }
  }

  static void batch_norm_backward_synced(batch_norm_sync& sync, const T* x, const T* dy, long n, long c, long t,
                                         const T* gamma, const T* mean, const T* invstd, T* dx, T* dgamma, T* dbeta) {
    // [sum dy (C), sum dy * xhat (C), values per channel]: this process's, then everyone's
    std::vector<double> sums(2 * static_cast<std::size_t>(c) + 1);
#pragma omp parallel for schedule(static)
    for (long ch = 0; ch < c; ++ch) {
      double sum_dy = 0, sum_dy_xhat = 0;
      batch_norm_gradient_sums(x, dy, n, c, t, ch, mean[ch], invstd[ch], sum_dy, sum_dy_xhat);
      dgamma[ch] += static_cast<T>(sum_dy_xhat);
      dbeta[ch] += static_cast<T>(sum_dy);
      sums[std::size_t(ch)] = sum_dy;
      sums[std::size_t(c + ch)] = sum_dy_xhat;
    }
    sums[2 * std::size_t(c)] = static_cast<double>(n) * t;
    sync.sum(sums.data(), 2 * c + 1);
    if (!dx) return;
    const double m = sums[2 * std::size_t(c)];
#pragma omp parallel for schedule(static)
    for (long ch = 0; ch < c; ++ch)
      batch_norm_dx(x, dy, n, c, t, ch, mean[ch], invstd[ch], gamma[ch], sums[std::size_t(ch)] / m,
                    sums[std::size_t(c + ch)] / m, dx);
  }

  // Channel ch of batch norm's backward: the sums of dy and of dy * xhat over (n, t), in order.
  static void batch_norm_gradient_sums(const T* x, const T* dy, long n, long c, long t, long ch, double mu, double is,
                                       double& sum_dy, double& sum_dy_xhat) {
    for (long i = 0; i < n; ++i) {
      const T* xc = x + (i * c + ch) * t;
      const T* dyc = dy + (i * c + ch) * t;
      for (long j = 0; j < t; ++j) {
        sum_dy += dyc[j];
        sum_dy_xhat += dyc[j] * (xc[j] - mu) * is;
      }
    }
  }

  // Channel ch of dx through the batch statistics, from the means of dy and dy * xhat.
  static void batch_norm_dx(const T* x, const T* dy, long n, long c, long t, long ch, double mu, double is, double g,
                            double mean_dy, double mean_dy_xhat, T* dx) {
    const double a = g * is;
    for (long i = 0; i < n; ++i) {
      const T* xc = x + (i * c + ch) * t;
      const T* dyc = dy + (i * c + ch) * t;
      T* dxc = dx + (i * c + ch) * t;
      for (long j = 0; j < t; ++j) {
        const double xhat = (xc[j] - mu) * is;
        dxc[j] = static_cast<T>(a * (dyc[j] - mean_dy - xhat * mean_dy_xhat));
      }
    }
  }

  static void normalize(const T* x, long n, long stride, long t, T mean, T scale, T beta, T* y) {
    for (long i = 0; i < n; ++i) {
      const T* xr = x + i * stride;
      T* yr = y + i * stride;
      for (long j = 0; j < t; ++j) yr[j] = (xr[j] - mean) * scale + beta;
    }
  }
};

SOUNDNET_ABI_END
}  // namespace soundnet
