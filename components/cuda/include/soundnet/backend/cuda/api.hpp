// The compiled half of the CUDA device (library soundnet_cuda, target soundnet::cuda): plain
// functions over device pointers, one overload per scalar type (float, double). Host C++ only:
// no CUDA header is needed to include it, so the programs and every consumer compile with their
// usual C++ compiler and only the library itself is compiled by nvcc (docs/design.md, "The CUDA
// device").
//
// Every function returns nullptr on success, or a message naming the failed call and the CUDA
// or cuBLAS error (valid until the next call on the same thread): the header side
// (device.hpp) turns it into a soundnet::error. Nothing is thrown across the library boundary,
// so the library does not depend on the ISA namespace of the consumer's build (core/abi.hpp).
//
// Work is queued on the state's stream in call order; functions that return host values
// (softmax_kl, copy_to_host) wait for it. The results do not depend on timing: every reduction
// sums in a fixed order (no atomics), so a run repeats bit for bit on the same GPU model.
#pragma once

#include <cstddef>
#include <cstdint>

namespace soundnet::cuda_backend {

using result = const char*;  // nullptr: success

/// A device context's state: the device, a stream, a cuBLAS handle, scratch memory.
struct state;

/// The GPUs visible to this process (0 when there is none, or no driver), and why there are
/// none: `why` receives a message (static storage) or nullptr.
int device_count(const char** why);

/// Makes GPU `device` (0 .. device_count() - 1) this thread's current one (cudaSetDevice).
result set_device(int device);

/// A state on GPU `device` (-1: the current one); fails with a clear message without a GPU.
result create(state** out, int device);
void destroy(state* s) noexcept;
/// The device's name and compute capability, e.g. "NVIDIA H100 80GB HBM3 (sm_90)".
result describe(state* s, char* text, std::size_t capacity);
/// The state's cudaStream_t, as an opaque pointer (for NCCL or the caller's own work).
void* stream(state* s) noexcept;
result synchronize(state* s);

/// Precision of the float32 convolutions' GEMMs: 0 strict float32 (the default), 1 TF32 tensor
/// cores (float32 storage and accumulation, operands rounded to 10-bit mantissas), 2 bfloat16
/// tensor cores (the same with 7-bit mantissas: cuBLAS's CUBLAS_COMPUTE_32F_FAST_16BF).
result set_math(state* s, int math);

/// Device memory on the current GPU (cudaMalloc); release(nullptr) does nothing.
result allocate(void** out, std::size_t bytes);
void release(void* p) noexcept;

/// Copies between host and device or on the device; host memory may be pageable.
result copy_to_host(state* s, const void* device_src, std::size_t bytes, void* host_dst);
result copy_from_host(state* s, const void* host_src, std::size_t bytes, void* device_dst);
result copy_on_device(state* s, const void* src, std::size_t bytes, void* dst);

/// An upload path beside a state's stream, for model inputs: pinned host memory, two device
/// buffers used in turn and a copy stream of its own (cuda::upload_stage in device.hpp).
struct stage;
result stage_create(state* s, stage** out);
void stage_destroy(stage* st) noexcept;
/// Pinned host memory of at least `bytes` for the next upload, in `host`; waits until the
/// previous upload has been copied out of it.
result stage_host(stage* st, std::size_t bytes, void** host);
/// Queues the copy of the host memory's first `bytes` into the next device buffer on the copy
/// stream, once the work the state's stream had queued at the previous upload has run (the
/// last to read that buffer), and makes the state's stream wait for the copy. Returns at once,
/// with the device buffer in `device` (valid until the upload after next).
result stage_upload(stage* st, std::size_t bytes, void** device);

/// One 1-D convolution's shapes (as soundnet::conv_geometry).
struct conv_shape {
  long n, c_in, t_in, c_out, kernel, stride, padding, t_out;
};

/// Sums values over the processes of a data-parallel run (soundnet::batch_norm_sync::sum).
using sum_function = void (*)(void* user, double* host_values, long count);
struct sync_hook {
  sum_function sum = nullptr;  // null: this process's batch alone
  void* user = nullptr;
};

#define SOUNDNET_CUDA_API_FOR(T)                                                                                       \
  result fill(state* s, T* x, long size, T value);                                                                     \
  result convert_int16(state* s, const std::int16_t* src, long size, T scale, T* dst);                                 \
  result conv1d_forward(state* s, const T* x, const T* w, const T* b, T* y, const conv_shape& g);                      \
  result conv1d_bn_relu_forward(state* s, const T* x, const T* w, const T* b, const T* gamma, const T* beta,           \
                                const T* mean, const T* var, double eps, T* y, const conv_shape& g);                  \
  result conv1d_backward(state* s, const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, const conv_shape& g);    \
  result batch_norm_forward_train(state* s, const T* x, long n, long c, long t, const T* gamma, const T* beta,         \
                                  double eps, double momentum, T* running_mean, T* running_var, T* save_mean,          \
                                  T* save_invstd, T* y, sync_hook sync);                                               \
  result batch_norm_forward_eval(state* s, const T* x, long n, long c, long t, const T* gamma, const T* beta,          \
                                 const T* running_mean, const T* running_var, double eps, T* y);                       \
  result batch_norm_invstd(state* s, const T* var, long c, double eps, T* invstd);                                     \
  result batch_norm_backward(state* s, const T* x, const T* dy, long n, long c, long t, const T* gamma, const T* mean, \
                             const T* invstd, bool training, T* dx, T* dgamma, T* dbeta, sync_hook sync);              \
  result relu_forward(state* s, const T* x, T* y, long size);                                                          \
  result relu_backward(state* s, const T* y, const T* dy, T* dx, long size);                                           \
  result max_pool_forward(state* s, const T* x, long rows, long t_in, long kernel, long stride, long t_out, T* y,      \
                          std::int32_t* argmax);                                                                       \
  result max_pool_backward(state* s, const T* dy, const std::int32_t* argmax, long rows, long t_in, long t_out,        \
                           T* dx);                                                                                     \
  result softmax_kl(state* s, const T* logits, long n, long c_total, long c_begin, long c, long t, const T* targets,   \
                    double divisor, T* grad, double* loss);                                                            \
  result adam_update(state* s, T* param, const T* grad, T* m, T* v, long size, double lr, double beta1, double beta2,  \
                     double eps, long step);                                                                         \
  result all_finite(state* s, const T* x, long size, bool* finite);

SOUNDNET_CUDA_API_FOR(float)
SOUNDNET_CUDA_API_FOR(double)
#undef SOUNDNET_CUDA_API_FOR

}  // namespace soundnet::cuda_backend
