// The CUDA device's operations (api.hpp): kernels of our own for the element-wise work, the
// reductions and the loss; cuBLAS for the convolutions' matrix products over im2col chunks.
// First version, chosen for being right and deterministic; docs/design.md ("The CUDA device")
// says which kernels are still to be measured and fused.
//
// Determinism: no atomics. Per-channel sums are taken in two levels (fixed segments, then the
// segments in order), col2im and the max-pool backward are gathers, the loss is summed by one
// block in a fixed order; cuBLAS repeats its results on the same GPU model and library.
#include <soundnet/backend/cuda/api.hpp>
#include <soundnet/backend/cuda/indexing.hpp>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace soundnet::cuda_backend {

namespace {

thread_local std::string last_message;

result fail(std::string message) {
  last_message = std::move(message);
  return last_message.c_str();
}

std::string cuda_text(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

#define SN_CUDA(call)                                                                         \
  do {                                                                                        \
    const cudaError_t e_ = (call);                                                            \
    if (e_ != cudaSuccess) return fail(std::string(#call) + " failed (" + cuda_text(e_) + ")"); \
  } while (0)
#define SN_BLAS(call)                                                                                   \
  do {                                                                                                  \
    const cublasStatus_t e_ = (call);                                                                   \
    if (e_ != CUBLAS_STATUS_SUCCESS) return fail(std::string(#call) + " failed (" + cublasGetStatusName(e_) + ")"); \
  } while (0)
#define SN_LAUNCHED(kernel)                                                                                   \
  do {                                                                                                        \
    const cudaError_t e_ = cudaGetLastError();                                                                \
    if (e_ != cudaSuccess) return fail(std::string("launch of ") + kernel + " failed (" + cuda_text(e_) + ")"); \
  } while (0)
#define SN_TRY(call)                 \
  do {                               \
    if (result r_ = (call)) return r_; \
  } while (0)

constexpr int threads = 256;
// Values of one im2col chunk (128 MiB of float32): bounds the scratch of a convolution.
constexpr long chunk_budget = 32L << 20;

unsigned blocks_for(long n) {
  const long b = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp(b, 1L, 1L << 20));
}

#define SN_GRID_STRIDE(i, n) \
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<long>(blockDim.x) * gridDim.x)

enum slot : int { cols_slot, dcols_slot, partial_slot, stats_slot, terms_slot, flag_slot, slot_count };

}  // namespace

struct state {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;  // of the float32 GEMMs (set_math)
  void* scratch[slot_count] = {};
  std::size_t scratch_bytes[slot_count] = {};
  double* host = nullptr;  // pinned, for the values that come back to the host
  std::size_t host_count = 0;

  ~state() {
    if (stream) cudaStreamSynchronize(stream);
    for (void* p : scratch) cudaFree(p);
    if (host) cudaFreeHost(host);
    if (blas) cublasDestroy(blas);
    if (stream) cudaStreamDestroy(stream);
  }
};

struct stage {
  state* owner = nullptr;
  cudaStream_t copy = nullptr;
  cudaEvent_t copied = nullptr;    // the last upload's copy
  cudaEvent_t released = nullptr;  // the owner's stream's work queued at the last upload
  bool uploaded = false;
  void* host = nullptr;  // pinned
  std::size_t host_bytes = 0;
  void* device[2] = {};
  std::size_t device_bytes[2] = {};
  int next = 0;  // the device buffer the next upload writes

  ~stage() {
    if (copy) cudaStreamSynchronize(copy);
    if (host) cudaFreeHost(host);
    for (void* p : device) cudaFree(p);  // cudaFree waits for the device: no reader is left
    if (copied) cudaEventDestroy(copied);
    if (released) cudaEventDestroy(released);
    if (copy) cudaStreamDestroy(copy);
  }
};

namespace {

// At least `bytes` of device scratch in `slot` (grown by freeing first: cudaFree waits for the
// device, so no queued kernel still reads the old memory).
result scratch(state* s, int which, std::size_t bytes, void** out) {
  if (bytes > s->scratch_bytes[which]) {
    SN_CUDA(cudaFree(s->scratch[which]));
    s->scratch[which] = nullptr;
    s->scratch_bytes[which] = 0;
    SN_CUDA(cudaMalloc(&s->scratch[which], bytes));
    s->scratch_bytes[which] = bytes;
  }
  *out = s->scratch[which];
  return nullptr;
}

template <class U>
result scratch_of(state* s, int which, long count, U** out) {
  void* p = nullptr;
  SN_TRY(scratch(s, which, sizeof(U) * static_cast<std::size_t>(std::max(count, 1L)), &p));
  *out = static_cast<U*>(p);
  return nullptr;
}

result host_values(state* s, std::size_t count, double** out) {
  if (count > s->host_count) {
    if (s->host) SN_CUDA(cudaFreeHost(s->host));
    s->host = nullptr;
    s->host_count = 0;
    SN_CUDA(cudaMallocHost(&s->host, count * sizeof(double)));
    s->host_count = count;
  }
  *out = s->host;
  return nullptr;
}

// ---- kernels ------------------------------------------------------------------------------

template <class T>
__global__ void fill_kernel(T* x, long n, T v) {
  SN_GRID_STRIDE(i, n) x[i] = v;
}

template <class T>
__global__ void int16_kernel(const std::int16_t* src, long n, T scale, T* dst) {
  SN_GRID_STRIDE(i, n) dst[i] = static_cast<T>(src[i]) * scale;
}

// cols (clips, c_in * kernel, width) for output steps [t0, t0 + width) of clips x (clips, c_in, t_in).
template <class T>
__global__ void im2col_kernel(const T* x, long c_in, long t_in, long kernel, long stride, long padding, long t0,
                              long width, long clips, T* cols) {
  const long rows = c_in * kernel;
  SN_GRID_STRIDE(e, clips * rows * width) {
    const index::im2col_position p = index::im2col_at(e, kernel, rows, width);
    const long src = index::conv_source(t0 + p.column, p.tap, stride, padding);
    cols[e] = src >= 0 && src < t_in ? x[(p.clip * c_in + p.channel) * t_in + src] : T(0);
  }
}

// y (n, c_out, t_out) = conv(x, w) without the bias, for one input channel (conv1): block
// (tile, clip) stages its input window and the weights in shared memory, reads the waveform
// once, and writes each output once; im2col would write and read every input value `kernel`
// times (64 for SoundNet's conv1).
template <class T>
__global__ void conv_direct_kernel(const T* x, const T* w, long t_in, long t_out, long c_out, long kernel, long stride,
                                   long padding, long tile, const T* scale, const T* shift, bool relu, T* y) {
  extern __shared__ unsigned char shared_bytes[];
  T* ws = reinterpret_cast<T*>(shared_bytes);
  T* xs = ws + c_out * kernel;
  const long clip = blockIdx.y, t0 = static_cast<long>(blockIdx.x) * tile;
  const index::input_window win = index::direct_window(t0, tile, kernel, stride, padding);
  const T* xc = x + clip * t_in;
  for (long i = threadIdx.x; i < c_out * kernel; i += blockDim.x) ws[i] = w[i];
  for (long i = threadIdx.x; i < win.span; i += blockDim.x) {
    const long src = win.first + i;
    xs[i] = src >= 0 && src < t_in ? xc[src] : T(0);
  }
  __syncthreads();
  const long width = t_out - t0 < tile ? t_out - t0 : tile;
  for (long e = threadIdx.x; e < c_out * width; e += blockDim.x) {
    const long o = e / width, j = e % width;
    const T* wo = ws + o * kernel;
    const T* xj = xs + j * stride;
    T acc = 0;
    for (long k = 0; k < kernel; ++k) acc += wo[k] * xj[k];
    if (scale) acc *= scale[o];  // the epilogue, as affine_kernel applies it
    acc += shift[o];
    y[(clip * c_out + o) * t_out + t0 + j] = relu ? (acc > T(0) ? acc : T(0)) : acc;
  }
}

// dx (clips, c_in, t_in) += col2im(dcols) over inputs [i_begin, i_begin + span): each input
// gathers its own terms.
template <class T>
__global__ void col2im_kernel(const T* dcols, long c_in, long t_in, long kernel, long stride, long padding, long t0,
                              long width, long clips, long i_begin, long span, T* dx) {
  const long rows = c_in * kernel;
  SN_GRID_STRIDE(e, clips * c_in * span) {
    const long i = i_begin + e % span;
    const long row = e / span;  // clip * c_in + channel
    const long clip = row / c_in, channel = row % c_in;
    const T* d = dcols + clip * rows * width + channel * kernel * width;
    T acc = 0;
    index::for_each_tap(i, kernel, stride, padding, t0, t0 + width,
                        [&](long k, long t) { acc += d[k * width + (t - t0)]; });
    dx[row * t_in + i] += acc;
  }
}

// y = relu?((x - center) * scale + shift) per channel of (n, c, t); null center / scale: 0 / 1.
template <class T>
__global__ void affine_kernel(const T* x, long total, long c, long t, const T* center, const T* scale, const T* shift,
                              bool relu, T* y) {
  SN_GRID_STRIDE(e, total) {
    const long ch = (e / t) % c;
    T v = x[e];
    if (center) v -= center[ch];
    if (scale) v *= scale[ch];
    v += shift[ch];
    y[e] = relu ? (v > T(0) ? v : T(0)) : v;
  }
}

// The inference block's epilogue: scale = gamma / sqrt(var + eps), shift = (b - mean) * scale + beta.
template <class T>
__global__ void fold_batch_norm_kernel(long c, const T* b, const T* gamma, const T* beta, const T* mean, const T* var,
                                       double eps, T* scale, T* shift) {
  SN_GRID_STRIDE(o, c) {
    const double s = gamma[o] / sqrt(static_cast<double>(var[o]) + eps);
    scale[o] = static_cast<T>(s);
    shift[o] = static_cast<T>((static_cast<double>(b[o]) - mean[o]) * s + beta[o]);
  }
}

struct sums2 {
  double a, b;
};

// Per-channel sums of f over (n, c, t): block (segment, channel) sums its segment in a fixed
// tree; channel_finish adds the segments in order.
template <class F>
__global__ void channel_partials(F f, long c, long t, long count, long segments, sums2* partial) {
  const long ch = blockIdx.y, seg = blockIdx.x;
  const index::range r = index::segment(seg, segments, count);
  double a = 0, b = 0;
  for (long j = r.begin + threadIdx.x; j < r.end; j += blockDim.x) {
    const sums2 v = f(index::channel_element(j, ch, c, t), ch);
    a += v.a;
    b += v.b;
  }
  __shared__ double sa[threads], sb[threads];
  sa[threadIdx.x] = a;
  sb[threadIdx.x] = b;
  __syncthreads();
  for (int step = threads / 2; step > 0; step >>= 1) {
    if (threadIdx.x < step) {
      sa[threadIdx.x] += sa[threadIdx.x + step];
      sb[threadIdx.x] += sb[threadIdx.x + step];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[ch * segments + seg] = {sa[0], sb[0]};
}

__global__ void channel_finish(const sums2* partial, long segments, long c, sums2* out) {
  SN_GRID_STRIDE(ch, c) {
    double a = 0, b = 0;
    for (long s = 0; s < segments; ++s) {
      a += partial[ch * segments + s].a;
      b += partial[ch * segments + s].b;
    }
    out[ch] = {a, b};
  }
}

template <class T>
struct value_of {
  const T* x;
  __device__ sums2 operator()(long e, long) const { return {static_cast<double>(x[e]), 0.0}; }
};

template <class T>
struct squared_deviation {
  const T* x;
  const double* mean;
  __device__ sums2 operator()(long e, long ch) const {
    const double d = static_cast<double>(x[e]) - mean[ch];
    return {d * d, 0.0};
  }
};

template <class T>
struct batch_norm_terms {  // dy and dy * xhat
  const T* x;
  const T* dy;
  const T* mean;
  const T* invstd;
  __device__ sums2 operator()(long e, long ch) const {
    const double g = dy[e];
    return {g, g * (static_cast<double>(x[e]) - static_cast<double>(mean[ch])) * static_cast<double>(invstd[ch])};
  }
};

__global__ void mean_kernel(const sums2* sums, long c, double count, double* mean) {
  SN_GRID_STRIDE(ch, c) mean[ch] = sums[ch].a / count;
}

template <class T>
__global__ void batch_norm_statistics_kernel(long c, double count, const double* mean, const sums2* squares,
                                             const T* gamma, double eps, double momentum, T* running_mean,
                                             T* running_var, T* save_mean, T* save_invstd, T* scale) {
  SN_GRID_STRIDE(ch, c) {
    const double sq = squares[ch].a, var = sq / count;
    const double invstd = 1.0 / sqrt(var + eps);
    const double unbiased = count > 1 ? sq / (count - 1) : var;
    save_mean[ch] = static_cast<T>(mean[ch]);
    save_invstd[ch] = static_cast<T>(invstd);
    running_mean[ch] = static_cast<T>((1 - momentum) * running_mean[ch] + momentum * mean[ch]);
    running_var[ch] = static_cast<T>((1 - momentum) * running_var[ch] + momentum * unbiased);
    scale[ch] = static_cast<T>(gamma[ch] * invstd);
  }
}

template <class T>
__global__ void eval_scale_kernel(long c, const T* gamma, const T* var, double eps, T* scale) {
  SN_GRID_STRIDE(ch, c) scale[ch] = static_cast<T>(gamma[ch] * (1.0 / sqrt(static_cast<double>(var[ch]) + eps)));
}

template <class T>
__global__ void invstd_kernel(long c, const T* var, double eps, T* invstd) {
  SN_GRID_STRIDE(ch, c) invstd[ch] = static_cast<T>(1.0 / sqrt(static_cast<double>(var[ch]) + eps));
}

template <class T>
__global__ void add_sums_kernel(long c, const sums2* sums, T* to_a, T* to_b) {  // either may be null
  SN_GRID_STRIDE(ch, c) {
    if (to_a) to_a[ch] += static_cast<T>(sums[ch].a);
    if (to_b) to_b[ch] += static_cast<T>(sums[ch].b);
  }
}

template <class T>
__global__ void batch_norm_dx_kernel(const T* x, const T* dy, long total, long c, long t, const T* gamma, const T* mean,
                                     const T* invstd, const sums2* sums, double count, bool training, T* dx) {
  SN_GRID_STRIDE(e, total) {
    const long ch = (e / t) % c;
    const double is = invstd[ch], g = gamma[ch];
    if (training) {
      const double a = g * is, mean_dy = sums[ch].a / count, mean_dy_xhat = sums[ch].b / count;
      const double xhat = (x[e] - static_cast<double>(mean[ch])) * is;
      dx[e] = static_cast<T>(a * (dy[e] - mean_dy - xhat * mean_dy_xhat));
    } else {
      dx[e] = dy[e] * static_cast<T>(g * is);
    }
  }
}

template <class T>
__global__ void relu_kernel(const T* x, T* y, long n) {
  SN_GRID_STRIDE(i, n) y[i] = x[i] > T(0) ? x[i] : T(0);
}

template <class T>
__global__ void relu_backward_kernel(const T* y, const T* dy, T* dx, long n) {
  SN_GRID_STRIDE(i, n) dx[i] = y[i] > T(0) ? dy[i] : T(0);
}

template <class T>
__global__ void max_pool_kernel(const T* x, long rows, long t_in, long kernel, long stride, long t_out, T* y,
                                std::int32_t* argmax) {
  SN_GRID_STRIDE(e, rows * t_out) {
    const long r = e / t_out, t = e % t_out;
    const T* xr = x + r * t_in;
    const long start = t * stride;
    long best = start;
    T v = xr[start];
    for (long k = 1; k < kernel; ++k) {
      const T c = xr[start + k];
      if (c > v || isnan(c)) {
        v = c;
        best = start + k;
        if (isnan(c)) break;
      }
    }
    y[e] = v;
    if (argmax) argmax[e] = static_cast<std::int32_t>(best);
  }
}

// dx must be zero: the first window of each run writes its input's gradient alone.
template <class T>
__global__ void max_pool_backward_kernel(const T* dy, const std::int32_t* argmax, long rows, long t_in, long t_out,
                                         T* dx) {
  SN_GRID_STRIDE(e, rows * t_out) {
    const long r = e / t_out, t = e % t_out;
    const std::int32_t* a = argmax + r * t_out;
    if (!index::pool_run_starts(a, t)) continue;
    T acc = 0;
    for (long u = t; u < t_out && a[u] == a[t]; ++u) acc += dy[r * t_out + u];
    dx[r * t_in + a[t]] = acc;
  }
}

template <class T>
__global__ void softmax_kl_kernel(const T* logits, long n, long c_total, long c_begin, long c, long t,
                                  const T* targets, double divisor, T* grad, double* terms) {
  SN_GRID_STRIDE(e, n * t) {
    const long i = e / t, j = e % t;
    const T* z = logits + (i * c_total + c_begin) * t + j;
    const T* p = targets + i * c * t + j;
    double zmax = -INFINITY;
    for (long k = 0; k < c; ++k) zmax = fmax(zmax, static_cast<double>(z[k * t]));
    double se = 0;
    for (long k = 0; k < c; ++k) se += exp(z[k * t] - zmax);
    const double lse = zmax + log(se);
    double kl = 0, psum = 0;
    for (long k = 0; k < c; ++k) {
      const double pk = p[k * t];
      psum += pk;
      if (pk > 0) kl += pk * (log(pk) - (z[k * t] - lse));
    }
    terms[e] = kl;
    if (grad) {
      T* gz = grad + (i * c_total + c_begin) * t + j;
      for (long k = 0; k < c; ++k) gz[k * t] = static_cast<T>((exp(z[k * t] - lse) * psum - p[k * t]) / divisor);
    }
  }
}

// One block: the sum of v (n) in a fixed order.
__global__ void sum_kernel(const double* v, long n, double* out) {
  __shared__ double s[threads];
  double a = 0;
  for (long i = threadIdx.x; i < n; i += blockDim.x) a += v[i];
  s[threadIdx.x] = a;
  __syncthreads();
  for (int step = threads / 2; step > 0; step >>= 1) {
    if (threadIdx.x < step) s[threadIdx.x] += s[threadIdx.x + step];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = s[0];
}

// *flag = 1 where x holds a NaN or an infinity (every writer writes the same value).
template <class T>
__global__ void non_finite_kernel(const T* x, long n, int* flag) {
  SN_GRID_STRIDE(i, n) if (!isfinite(x[i])) *flag = 1;
}

template <class T>
__global__ void adam_kernel(T* param, const T* grad, T* m, T* v, long n, T b1, T one_b1, T b2, T one_b2, T step_size,
                            T inv_bc2, T e) {
  SN_GRID_STRIDE(i, n) {
    const T g = grad[i];
    const T mi = m[i] * b1 + g * one_b1;
    const T vi = v[i] * b2 + g * g * one_b2;
    m[i] = mi;
    v[i] = vi;
    const T denom = sqrt(vi) / inv_bc2 + e;
    param[i] -= step_size * (mi / denom);
  }
}

// ---- host helpers -------------------------------------------------------------------------

cublasStatus_t gemm(state* s, cublasOperation_t ta, cublasOperation_t tb, long m, long n, long k,
                    const float* a, long lda, long long stride_a, const float* b, long ldb, long long stride_b,
                    float beta, float* c, long ldc, long long stride_c, long batch) {
  const float one = 1;
  return cublasGemmStridedBatchedEx(s->blas, ta, tb, int(m), int(n), int(k), &one, a, CUDA_R_32F, int(lda), stride_a,
                                    b, CUDA_R_32F, int(ldb), stride_b, &beta, c, CUDA_R_32F, int(ldc), stride_c,
                                    int(batch), s->compute, CUBLAS_GEMM_DEFAULT);
}
cublasStatus_t gemm(state* s, cublasOperation_t ta, cublasOperation_t tb, long m, long n, long k,
                    const double* a, long lda, long long stride_a, const double* b, long ldb, long long stride_b,
                    double beta, double* c, long ldc, long long stride_c, long batch) {
  const double one = 1;
  return cublasDgemmStridedBatched(s->blas, ta, tb, int(m), int(n), int(k), &one, a, int(lda), stride_a, b, int(ldb),
                                   stride_b, &beta, c, int(ldc), stride_c, int(batch));
}

long segments_for(long count) { return std::clamp((count + 8191) / 8192, 1L, 1024L); }

template <class F>
result channel_sums(state* s, F f, long n, long c, long t, sums2* out) {
  const long count = n * t, segments = segments_for(count);
  sums2* partial = nullptr;
  SN_TRY(scratch_of(s, partial_slot, segments * c, &partial));
  channel_partials<<<dim3(unsigned(segments), unsigned(c)), threads, 0, s->stream>>>(f, c, t, count, segments, partial);
  SN_LAUNCHED("channel_partials");
  channel_finish<<<blocks_for(c), threads, 0, s->stream>>>(partial, segments, c, out);
  SN_LAUNCHED("channel_finish");
  return nullptr;
}

// Sums device values (the a, or a and b, of `c` sums2) and `count` over the processes through
// the hook, in place.
result all_reduce(state* s, sums2* sums, long c, bool both, double* count, sync_hook sync) {
  std::vector<sums2> host(static_cast<std::size_t>(c));
  SN_CUDA(cudaMemcpyAsync(host.data(), sums, sizeof(sums2) * host.size(), cudaMemcpyDeviceToHost, s->stream));
  SN_CUDA(cudaStreamSynchronize(s->stream));
  std::vector<double> values;
  for (const auto& v : host) values.push_back(v.a);
  if (both)
    for (const auto& v : host) values.push_back(v.b);
  values.push_back(*count);
  sync.sum(sync.user, values.data(), static_cast<long>(values.size()));
  for (long ch = 0; ch < c; ++ch) {
    host[std::size_t(ch)].a = values[std::size_t(ch)];
    if (both) host[std::size_t(ch)].b = values[std::size_t(c + ch)];
  }
  *count = values.back();
  SN_CUDA(cudaMemcpyAsync(sums, host.data(), sizeof(sums2) * host.size(), cudaMemcpyHostToDevice, s->stream));
  SN_CUDA(cudaStreamSynchronize(s->stream));  // `host` goes out of scope
  return nullptr;
}

// ---- the operations, for T float or double ------------------------------------------------

// y = relu?((x - center) * scale + shift) over (n, c, t): affine_kernel's launch.
template <class T>
result affine(state* s, const T* x, long n, long c, long t, const T* center, const T* scale, const T* shift, bool relu,
              T* y, const char* what) {
  const long total = n * c * t;
  affine_kernel<<<blocks_for(total), threads, 0, s->stream>>>(x, total, c, t, center, scale, shift, relu, y);
  SN_LAUNCHED(what);
  return nullptr;
}

template <class T>
result do_fill(state* s, T* x, long size, T value) {
  if (size <= 0) return nullptr;
  fill_kernel<<<blocks_for(size), threads, 0, s->stream>>>(x, size, value);
  SN_LAUNCHED("fill");
  return nullptr;
}

template <class T>
result do_convert_int16(state* s, const std::int16_t* src, long size, T scale, T* dst) {
  if (size <= 0) return nullptr;
  int16_kernel<<<blocks_for(size), threads, 0, s->stream>>>(src, size, scale, dst);
  SN_LAUNCHED("convert_int16");
  return nullptr;
}

// y = relu?(conv(x, w) * scale + shift) per output channel (null scale: 1): one input channel
// by the direct kernel, the epilogue in its registers; otherwise im2col chunks of clips and
// columns, one strided-batched GEMM per chunk, then the epilogue in one pass.
template <class T>
result conv_epilogue(state* s, const T* x, const T* w, T* y, const conv_shape& g, const T* scale, const T* shift,
                     bool relu) {
  constexpr long tile = 256;  // output steps per block of the direct kernel
  const std::size_t direct_bytes = sizeof(T) * static_cast<std::size_t>(g.c_out * g.kernel + (tile - 1) * g.stride + g.kernel);
  if (g.c_in == 1 && direct_bytes <= 48 * 1024 && g.n <= 65535) {
    const dim3 grid(static_cast<unsigned>((g.t_out + tile - 1) / tile), static_cast<unsigned>(g.n));
    conv_direct_kernel<<<grid, threads, direct_bytes, s->stream>>>(x, w, g.t_in, g.t_out, g.c_out, g.kernel, g.stride,
                                                                   g.padding, tile, scale, shift, relu, y);
    SN_LAUNCHED("conv_direct");
    return nullptr;
  }
  const long rows = g.c_in * g.kernel;
  const index::chunk_plan plan = index::plan_chunks(g.n, rows, g.t_out, chunk_budget);
  T* cols = nullptr;
  SN_TRY(scratch_of(s, cols_slot, plan.clips * rows * plan.columns, &cols));
  for (long n0 = 0; n0 < g.n; n0 += plan.clips) {
    const long clips = std::min(plan.clips, g.n - n0);
    for (long t0 = 0; t0 < g.t_out; t0 += plan.columns) {
      const long width = std::min(plan.columns, g.t_out - t0);
      im2col_kernel<<<blocks_for(clips * rows * width), threads, 0, s->stream>>>(
          x + n0 * g.c_in * g.t_in, g.c_in, g.t_in, g.kernel, g.stride, g.padding, t0, width, clips, cols);
      SN_LAUNCHED("im2col");
      SN_BLAS(gemm(s, CUBLAS_OP_N, CUBLAS_OP_N, width, g.c_out, rows, cols, width, rows * width, w, rows, 0, T(0),
                   y + n0 * g.c_out * g.t_out + t0, g.t_out, g.c_out * g.t_out, clips));
    }
  }
  return affine(s, y, g.n, g.c_out, g.t_out, static_cast<const T*>(nullptr), scale, shift, relu, y,
                "convolution_epilogue");
}

template <class T>
result do_conv1d_forward(state* s, const T* x, const T* w, const T* b, T* y, const conv_shape& g) {
  return conv_epilogue(s, x, w, y, g, static_cast<const T*>(nullptr), b, false);
}

template <class T>
result do_conv1d_bn_relu_forward(state* s, const T* x, const T* w, const T* b, const T* gamma, const T* beta,
                                 const T* mean, const T* var, double eps, T* y, const conv_shape& g) {
  T* folded = nullptr;  // scale (C_out), shift (C_out)
  SN_TRY(scratch_of(s, stats_slot, 2 * g.c_out, &folded));
  fold_batch_norm_kernel<<<blocks_for(g.c_out), threads, 0, s->stream>>>(g.c_out, b, gamma, beta, mean, var, eps,
                                                                          folded, folded + g.c_out);
  SN_LAUNCHED("fold_batch_norm");
  return conv_epilogue(s, x, w, y, g, static_cast<const T*>(folded), static_cast<const T*>(folded + g.c_out), true);
}

template <class T>
result do_conv1d_backward(state* s, const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, const conv_shape& g) {
  sums2* bias = nullptr;
  SN_TRY(scratch_of(s, stats_slot, g.c_out, &bias));
  SN_TRY(channel_sums(s, value_of<T>{dy}, g.n, g.c_out, g.t_out, bias));
  add_sums_kernel<<<blocks_for(g.c_out), threads, 0, s->stream>>>(g.c_out, bias, db, static_cast<T*>(nullptr));
  SN_LAUNCHED("bias_gradient");
  if (dx) SN_TRY(do_fill(s, dx, g.n * g.c_in * g.t_in, T(0)));
  const long rows = g.c_in * g.kernel;
  const index::chunk_plan plan = index::plan_chunks(g.n, rows, g.t_out, chunk_budget);
  T *cols = nullptr, *dcols = nullptr;
  SN_TRY(scratch_of(s, cols_slot, plan.clips * rows * plan.columns, &cols));
  if (dx) SN_TRY(scratch_of(s, dcols_slot, plan.clips * rows * plan.columns, &dcols));
  for (long n0 = 0; n0 < g.n; n0 += plan.clips) {
    const long clips = std::min(plan.clips, g.n - n0);
    for (long t0 = 0; t0 < g.t_out; t0 += plan.columns) {
      const long width = std::min(plan.columns, g.t_out - t0);
      im2col_kernel<<<blocks_for(clips * rows * width), threads, 0, s->stream>>>(
          x + n0 * g.c_in * g.t_in, g.c_in, g.t_in, g.kernel, g.stride, g.padding, t0, width, clips, cols);
      SN_LAUNCHED("im2col");
      for (long b = 0; b < clips; ++b)  // dw (C_out, rows) += dy_b (C_out, width) cols_b^T, clip by clip
        SN_BLAS(gemm(s, CUBLAS_OP_T, CUBLAS_OP_N, rows, g.c_out, width, cols + b * rows * width, width, 0,
                     dy + (n0 + b) * g.c_out * g.t_out + t0, g.t_out, 0, T(1), dw, rows, 0, 1));
      if (!dx) continue;
      // dcols (rows, width) = w^T (rows, C_out) dy (C_out, width), then gathered into dx.
      SN_BLAS(gemm(s, CUBLAS_OP_N, CUBLAS_OP_T, width, rows, g.c_out, dy + n0 * g.c_out * g.t_out + t0, g.t_out,
                   g.c_out * g.t_out, w, rows, 0, T(0), dcols, width, rows * width, clips));
      const long i_begin = std::max(0L, t0 * g.stride - g.padding);
      const long i_end = std::min(g.t_in, (t0 + width - 1) * g.stride - g.padding + g.kernel);
      if (i_end <= i_begin) continue;
      const long span = i_end - i_begin;
      col2im_kernel<<<blocks_for(clips * g.c_in * span), threads, 0, s->stream>>>(
          dcols, g.c_in, g.t_in, g.kernel, g.stride, g.padding, t0, width, clips, i_begin, span,
          dx + n0 * g.c_in * g.t_in);
      SN_LAUNCHED("col2im");
    }
  }
  return nullptr;
}

template <class T>
result do_batch_norm_forward_train(state* s, const T* x, long n, long c, long t, const T* gamma, const T* beta,
                                   double eps, double momentum, T* running_mean, T* running_var, T* save_mean,
                                   T* save_invstd, T* y, sync_hook sync) {
  // stats: sums (C), squares (C), mean (C doubles), scale (C values of T), as sums2-sized cells
  sums2* cells = nullptr;
  SN_TRY(scratch_of(s, stats_slot, 4 * c, &cells));
  sums2 *sums = cells, *squares = cells + c;
  double* mean = reinterpret_cast<double*>(cells + 2 * c);
  T* scale = reinterpret_cast<T*>(cells + 3 * c);
  double count = static_cast<double>(n) * t;
  SN_TRY(channel_sums(s, value_of<T>{x}, n, c, t, sums));
  if (sync.sum) SN_TRY(all_reduce(s, sums, c, false, &count, sync));
  mean_kernel<<<blocks_for(c), threads, 0, s->stream>>>(sums, c, count, mean);
  SN_LAUNCHED("batch_norm_mean");
  SN_TRY(channel_sums(s, squared_deviation<T>{x, mean}, n, c, t, squares));
  if (sync.sum) {
    double ignored = 0;
    SN_TRY(all_reduce(s, squares, c, false, &ignored, sync));
  }
  batch_norm_statistics_kernel<<<blocks_for(c), threads, 0, s->stream>>>(
      c, count, mean, squares, gamma, eps, momentum, running_mean, running_var, save_mean, save_invstd, scale);
  SN_LAUNCHED("batch_norm_statistics");
  return affine(s, x, n, c, t, static_cast<const T*>(save_mean), static_cast<const T*>(scale), beta, false, y,
                "batch_norm_normalise");
}

template <class T>
result do_batch_norm_forward_eval(state* s, const T* x, long n, long c, long t, const T* gamma, const T* beta,
                                  const T* running_mean, const T* running_var, double eps, T* y) {
  T* scale = nullptr;
  SN_TRY(scratch_of(s, stats_slot, c, &scale));
  eval_scale_kernel<<<blocks_for(c), threads, 0, s->stream>>>(c, gamma, running_var, eps, scale);
  SN_LAUNCHED("batch_norm_eval_scale");
  return affine(s, x, n, c, t, running_mean, static_cast<const T*>(scale), beta, false, y, "batch_norm_eval");
}

template <class T>
result do_batch_norm_invstd(state* s, const T* var, long c, double eps, T* invstd) {
  invstd_kernel<<<blocks_for(c), threads, 0, s->stream>>>(c, var, eps, invstd);
  SN_LAUNCHED("batch_norm_invstd");
  return nullptr;
}

template <class T>
result do_batch_norm_backward(state* s, const T* x, const T* dy, long n, long c, long t, const T* gamma,
                              const T* mean, const T* invstd, bool training, T* dx, T* dgamma, T* dbeta,
                              sync_hook sync) {
  sums2* sums = nullptr;
  SN_TRY(scratch_of(s, stats_slot, c, &sums));
  SN_TRY(channel_sums(s, batch_norm_terms<T>{x, dy, mean, invstd}, n, c, t, sums));
  add_sums_kernel<<<blocks_for(c), threads, 0, s->stream>>>(c, sums, dbeta, dgamma);  // this process's share
  SN_LAUNCHED("batch_norm_parameter_gradients");
  if (!dx) return nullptr;
  double count = static_cast<double>(n) * t;
  if (training && sync.sum) SN_TRY(all_reduce(s, sums, c, true, &count, sync));
  const long total = n * c * t;
  batch_norm_dx_kernel<<<blocks_for(total), threads, 0, s->stream>>>(x, dy, total, c, t, gamma, mean, invstd, sums,
                                                                     count, training, dx);
  SN_LAUNCHED("batch_norm_dx");
  return nullptr;
}

template <class T>
result do_relu_forward(state* s, const T* x, T* y, long size) {
  if (size <= 0) return nullptr;
  relu_kernel<<<blocks_for(size), threads, 0, s->stream>>>(x, y, size);
  SN_LAUNCHED("relu");
  return nullptr;
}

template <class T>
result do_relu_backward(state* s, const T* y, const T* dy, T* dx, long size) {
  if (size <= 0) return nullptr;
  relu_backward_kernel<<<blocks_for(size), threads, 0, s->stream>>>(y, dy, dx, size);
  SN_LAUNCHED("relu_backward");
  return nullptr;
}

template <class T>
result do_max_pool_forward(state* s, const T* x, long rows, long t_in, long kernel, long stride, long t_out, T* y,
                           std::int32_t* argmax) {
  if (rows * t_out <= 0) return nullptr;
  max_pool_kernel<<<blocks_for(rows * t_out), threads, 0, s->stream>>>(x, rows, t_in, kernel, stride, t_out, y, argmax);
  SN_LAUNCHED("max_pool");
  return nullptr;
}

template <class T>
result do_max_pool_backward(state* s, const T* dy, const std::int32_t* argmax, long rows, long t_in, long t_out,
                            T* dx) {
  SN_TRY(do_fill(s, dx, rows * t_in, T(0)));
  if (rows * t_out <= 0) return nullptr;
  max_pool_backward_kernel<<<blocks_for(rows * t_out), threads, 0, s->stream>>>(dy, argmax, rows, t_in, t_out, dx);
  SN_LAUNCHED("max_pool_backward");
  return nullptr;
}

template <class T>
result do_softmax_kl(state* s, const T* logits, long n, long c_total, long c_begin, long c, long t, const T* targets,
                     double divisor, T* grad, double* loss) {
  double* terms = nullptr;
  SN_TRY(scratch_of(s, terms_slot, n * t + 1, &terms));
  softmax_kl_kernel<<<blocks_for(n * t), threads, 0, s->stream>>>(logits, n, c_total, c_begin, c, t, targets, divisor,
                                                                  grad, terms);
  SN_LAUNCHED("softmax_kl");
  sum_kernel<<<1, threads, 0, s->stream>>>(terms, n * t, terms + n * t);
  SN_LAUNCHED("softmax_kl_sum");
  double* host = nullptr;
  SN_TRY(host_values(s, 1, &host));
  SN_CUDA(cudaMemcpyAsync(host, terms + n * t, sizeof(double), cudaMemcpyDeviceToHost, s->stream));
  SN_CUDA(cudaStreamSynchronize(s->stream));
  *loss = host[0] / divisor;
  return nullptr;
}

template <class T>
result do_adam_update(state* s, T* param, const T* grad, T* m, T* v, long size, double lr, double beta1, double beta2,
                      double eps, long step) {
  if (size <= 0) return nullptr;
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(beta2, static_cast<double>(step)));
  adam_kernel<<<blocks_for(size), threads, 0, s->stream>>>(
      param, grad, m, v, size, static_cast<T>(beta1), static_cast<T>(1 - beta1), static_cast<T>(beta2),
      static_cast<T>(1 - beta2), static_cast<T>(lr / bc1), static_cast<T>(bc2_sqrt), static_cast<T>(eps));
  SN_LAUNCHED("adam");
  return nullptr;
}

template <class T>
result do_all_finite(state* s, const T* x, long size, bool* finite) {
  *finite = true;
  if (size <= 0) return nullptr;
  int* flag = nullptr;
  SN_TRY(scratch_of(s, flag_slot, 1, &flag));
  SN_CUDA(cudaMemsetAsync(flag, 0, sizeof(int), s->stream));
  non_finite_kernel<<<blocks_for(size), threads, 0, s->stream>>>(x, size, flag);
  SN_LAUNCHED("non_finite");
  int host = 0;
  SN_CUDA(cudaMemcpyAsync(&host, flag, sizeof(int), cudaMemcpyDeviceToHost, s->stream));
  SN_CUDA(cudaStreamSynchronize(s->stream));
  *finite = host == 0;
  return nullptr;
}

}  // namespace

// ---- the API ---------------------------------------------------------------------------------

int device_count(const char** why) {
  thread_local std::string reason;
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear it
    reason = "no usable CUDA GPU (cudaGetDeviceCount: " + cuda_text(e) + ")";
    if (why) *why = reason.c_str();
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA GPU is visible to this process (cudaGetDeviceCount found none)";
  if (n > 0 && why) *why = nullptr;
  return n;
}

result set_device(int device) {
  const int n = device_count(nullptr);
  if (device < 0 || device >= n)
    return fail("GPU " + std::to_string(device) + " was asked for; this process sees " + std::to_string(n));
  SN_CUDA(cudaSetDevice(device));
  return nullptr;
}

result create(state** out, int device) {
  *out = nullptr;
  const char* why = nullptr;
  if (device_count(&why) == 0) {
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    return fail(std::string("the CUDA device was asked for, but ") + (why ? why : "there is no GPU") +
                (visible ? std::string("; CUDA_VISIBLE_DEVICES=") + visible : std::string()) +
                ". Use the CPU device (soundnet::cpu, --device cpu) on this machine.");
  }
  auto s = std::make_unique<state>();
  if (device < 0) {
    SN_CUDA(cudaGetDevice(&s->device));
  } else {
    SN_CUDA(cudaSetDevice(device));
    s->device = device;
  }
  SN_CUDA(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
  SN_BLAS(cublasCreate(&s->blas));
  SN_BLAS(cublasSetStream(s->blas, s->stream));
  SN_BLAS(cublasSetMathMode(s->blas, CUBLAS_DEFAULT_MATH));
  *out = s.release();
  return nullptr;
}

void destroy(state* s) noexcept { delete s; }

result describe(state* s, char* text, std::size_t capacity) {
  cudaDeviceProp p{};
  SN_CUDA(cudaGetDeviceProperties(&p, s->device));
  std::snprintf(text, capacity, "%s (sm_%d%d, %.0f GiB)", p.name, p.major, p.minor,
                static_cast<double>(p.totalGlobalMem) / (1024.0 * 1024 * 1024));
  return nullptr;
}

void* stream(state* s) noexcept { return s ? s->stream : nullptr; }

result synchronize(state* s) {
  SN_CUDA(cudaStreamSynchronize(s->stream));
  return nullptr;
}

result set_math(state* s, int math) {
  if (math < 0 || math > 2) return fail("set_math: " + std::to_string(math) + " is not 0 (strict), 1 (TF32) or 2 (bf16)");
  s->compute = math == 1 ? CUBLAS_COMPUTE_32F_FAST_TF32 : math == 2 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
  return nullptr;
}

result allocate(void** out, std::size_t bytes) {
  *out = nullptr;
  if (bytes == 0) return nullptr;
  const cudaError_t e = cudaMalloc(out, bytes);
  if (e == cudaSuccess) return nullptr;
  cudaGetLastError();
  const char* why = nullptr;
  if (device_count(&why) == 0)
    return fail(std::string("the CUDA device was asked for, but ") + (why ? why : "there is no GPU") +
                ". Use the CPU device (soundnet::cpu, --device cpu) on this machine.");
  std::size_t free_bytes = 0, total_bytes = 0;
  cudaMemGetInfo(&free_bytes, &total_bytes);
  cudaGetLastError();
  return fail("cudaMalloc of " + std::to_string(bytes >> 20) + " MiB failed (" + cuda_text(e) + "; " +
              std::to_string(free_bytes >> 20) + " of " + std::to_string(total_bytes >> 20) + " MiB free)");
}

void release(void* p) noexcept {
  if (p) cudaFree(p);
}

result copy_to_host(state* s, const void* src, std::size_t bytes, void* host_dst) {
  if (bytes == 0) return nullptr;
  SN_CUDA(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, s->stream));
  SN_CUDA(cudaStreamSynchronize(s->stream));
  return nullptr;
}

result copy_from_host(state* s, const void* host_src, std::size_t bytes, void* dst) {
  if (bytes == 0) return nullptr;
  SN_CUDA(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, s->stream));
  // From pageable memory the call returns once the data is staged; from pinned memory the copy
  // is still running: wait, so that the caller may reuse its buffer on return either way.
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, host_src) == cudaSuccess && a.type == cudaMemoryTypeHost)
    SN_CUDA(cudaStreamSynchronize(s->stream));
  cudaGetLastError();
  return nullptr;
}

result copy_on_device(state* s, const void* src, std::size_t bytes, void* dst) {
  if (bytes == 0 || src == dst) return nullptr;
  SN_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s->stream));
  return nullptr;
}

result stage_create(state* s, stage** out) {
  *out = nullptr;
  auto st = std::make_unique<stage>();
  st->owner = s;
  SN_CUDA(cudaStreamCreateWithFlags(&st->copy, cudaStreamNonBlocking));
  SN_CUDA(cudaEventCreateWithFlags(&st->copied, cudaEventDisableTiming));
  SN_CUDA(cudaEventCreateWithFlags(&st->released, cudaEventDisableTiming));
  *out = st.release();
  return nullptr;
}

void stage_destroy(stage* st) noexcept { delete st; }

result stage_host(stage* st, std::size_t bytes, void** host) {
  *host = nullptr;
  if (st->uploaded) SN_CUDA(cudaEventSynchronize(st->copied));
  if (bytes > st->host_bytes) {
    if (st->host) SN_CUDA(cudaFreeHost(st->host));
    st->host = nullptr;
    st->host_bytes = 0;
    SN_CUDA(cudaHostAlloc(&st->host, bytes, cudaHostAllocDefault));
    st->host_bytes = bytes;
  }
  *host = st->host;
  return nullptr;
}

result stage_upload(stage* st, std::size_t bytes, void** device) {
  *device = nullptr;
  if (bytes > st->host_bytes) return fail("stage_upload: " + std::to_string(bytes) + " bytes asked for, " +
                                          std::to_string(st->host_bytes) + " staged (call stage_host first)");
  const int b = st->next;
  if (bytes > st->device_bytes[b]) {  // cudaFree waits for the device: no reader is left
    SN_CUDA(cudaFree(st->device[b]));
    st->device[b] = nullptr;
    st->device_bytes[b] = 0;
    SN_CUDA(cudaMalloc(&st->device[b], bytes));
    st->device_bytes[b] = bytes;
  }
  // Buffer b was last read by work queued before the previous upload: `released` as recorded
  // then. The wait takes that record; the new record is for the next upload.
  if (st->uploaded) SN_CUDA(cudaStreamWaitEvent(st->copy, st->released, 0));
  SN_CUDA(cudaEventRecord(st->released, st->owner->stream));
  SN_CUDA(cudaMemcpyAsync(st->device[b], st->host, bytes, cudaMemcpyHostToDevice, st->copy));
  SN_CUDA(cudaEventRecord(st->copied, st->copy));
  SN_CUDA(cudaStreamWaitEvent(st->owner->stream, st->copied, 0));
  st->uploaded = true;
  st->next = 1 - b;
  *device = st->device[b];
  return nullptr;
}

#define SOUNDNET_CUDA_DEFINE_FOR(T)                                                                                   \
  result fill(state* s, T* x, long size, T value) { return do_fill(s, x, size, value); }                             \
  result convert_int16(state* s, const std::int16_t* src, long size, T scale, T* dst) {                              \
    return do_convert_int16(s, src, size, scale, dst);                                                                \
  }                                                                                                                   \
  result conv1d_forward(state* s, const T* x, const T* w, const T* b, T* y, const conv_shape& g) {                   \
    return do_conv1d_forward(s, x, w, b, y, g);                                                                       \
  }                                                                                                                   \
  result conv1d_bn_relu_forward(state* s, const T* x, const T* w, const T* b, const T* gamma, const T* beta,          \
                                const T* mean, const T* var, double eps, T* y, const conv_shape& g) {                 \
    return do_conv1d_bn_relu_forward(s, x, w, b, gamma, beta, mean, var, eps, y, g);                                  \
  }                                                                                                                   \
  result conv1d_backward(state* s, const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, const conv_shape& g) {   \
    return do_conv1d_backward(s, x, w, dy, dx, dw, db, g);                                                            \
  }                                                                                                                   \
  result batch_norm_forward_train(state* s, const T* x, long n, long c, long t, const T* gamma, const T* beta,        \
                                  double eps, double momentum, T* running_mean, T* running_var, T* save_mean,         \
                                  T* save_invstd, T* y, sync_hook sync) {                                             \
    return do_batch_norm_forward_train(s, x, n, c, t, gamma, beta, eps, momentum, running_mean, running_var,          \
                                       save_mean, save_invstd, y, sync);                                              \
  }                                                                                                                   \
  result batch_norm_forward_eval(state* s, const T* x, long n, long c, long t, const T* gamma, const T* beta,         \
                                 const T* running_mean, const T* running_var, double eps, T* y) {                     \
    return do_batch_norm_forward_eval(s, x, n, c, t, gamma, beta, running_mean, running_var, eps, y);                 \
  }                                                                                                                   \
  result batch_norm_invstd(state* s, const T* var, long c, double eps, T* invstd) {                                   \
    return do_batch_norm_invstd(s, var, c, eps, invstd);                                                              \
  }                                                                                                                   \
  result batch_norm_backward(state* s, const T* x, const T* dy, long n, long c, long t, const T* gamma, const T* mean, \
                             const T* invstd, bool training, T* dx, T* dgamma, T* dbeta, sync_hook sync) {             \
    return do_batch_norm_backward(s, x, dy, n, c, t, gamma, mean, invstd, training, dx, dgamma, dbeta, sync);         \
  }                                                                                                                   \
  result relu_forward(state* s, const T* x, T* y, long size) { return do_relu_forward(s, x, y, size); }              \
  result relu_backward(state* s, const T* y, const T* dy, T* dx, long size) { return do_relu_backward(s, y, dy, dx, size); } \
  result max_pool_forward(state* s, const T* x, long rows, long t_in, long kernel, long stride, long t_out, T* y,     \
                          std::int32_t* argmax) {                                                                     \
    return do_max_pool_forward(s, x, rows, t_in, kernel, stride, t_out, y, argmax);                                   \
  }                                                                                                                   \
  result max_pool_backward(state* s, const T* dy, const std::int32_t* argmax, long rows, long t_in, long t_out,       \
                           T* dx) {                                                                                   \
    return do_max_pool_backward(s, dy, argmax, rows, t_in, t_out, dx);                                                \
  }                                                                                                                   \
  result softmax_kl(state* s, const T* logits, long n, long c_total, long c_begin, long c, long t, const T* targets,   \
                    double divisor, T* grad, double* loss) {                                                          \
    return do_softmax_kl(s, logits, n, c_total, c_begin, c, t, targets, divisor, grad, loss);                        \
  }                                                                                                                   \
  result adam_update(state* s, T* param, const T* grad, T* m, T* v, long size, double lr, double beta1, double beta2, \
                     double eps, long step) {                                                                         \
    return do_adam_update(s, param, grad, m, v, size, lr, beta1, beta2, eps, step);                                   \
  }                                                                                                                   \
  result all_finite(state* s, const T* x, long size, bool* finite) { return do_all_finite(s, x, size, finite); }

SOUNDNET_CUDA_DEFINE_FOR(float)
SOUNDNET_CUDA_DEFINE_FOR(double)
#undef SOUNDNET_CUDA_DEFINE_FOR

}  // namespace soundnet::cuda_backend
