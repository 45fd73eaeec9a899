// The CUDA device: model<Net, T, soundnet::cuda> (T float or double) runs every operation on a
// GPU. Included by <soundnet/soundnet.hpp> when SOUNDNET_WITH_CUDA is defined, which linking
// the target soundnet::cuda does; the kernels are compiled into that library (api.hpp), so this
// header needs no CUDA header and a consumer no nvcc.
//
// Asking for soundnet::cuda without the library fails to compile with
// SOUNDNET_CUDA_BACKEND_IS_NOT_COMPILED_IN; with it but no GPU at run time, the first context or
// buffer throws soundnet::error naming the reason. The CPU is never used in its place.
#pragma once

#ifndef SOUNDNET_INSIDE_SOUNDNET
#error "include <soundnet/soundnet.hpp> (linking soundnet::cuda) instead of soundnet/backend/cuda/device.hpp"
#endif

#include <soundnet/core/abi.hpp>
#include <soundnet/core/error.hpp>
#include <soundnet/backend/device.hpp>
#include "api.hpp"
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

namespace soundnet {
SOUNDNET_ABI_BEGIN

namespace detail {
inline void cuda_check(cuda_backend::result r) {
  if (r) throw error(std::string("soundnet (CUDA device): ") + r);
}
}  // namespace detail

/// The CUDA device.
struct cuda {
  static constexpr const char* name = "cuda";
  static constexpr bool compiled_in = true;

  /// The GPUs this process sees (0 without a GPU or driver: never throws).
  static int device_count() { return cuda_backend::device_count(nullptr); }
  /// Makes GPU `device` the current one of this thread: contexts and buffers made afterwards
  /// live there (one GPU per process of a data-parallel run).
  static void use_device(int device) { detail::cuda_check(cuda_backend::set_device(device)); }
  /// Why no GPU can be used ("" when one can): the driver's own words.
  static std::string unavailable_reason() {
    const char* why = nullptr;
    return cuda_backend::device_count(&why) > 0 || !why ? std::string() : std::string(why);
  }

  /// Device memory for U (the buffer contract of backend/device.hpp). Growing past the
  /// capacity frees the old memory first: the contents are not kept.
  template <class U>
  class buffer {
   public:
    buffer() = default;
    buffer(const buffer&) = delete;
    buffer& operator=(const buffer&) = delete;
    buffer(buffer&& o) noexcept { swap(o); }
    buffer& operator=(buffer&& o) noexcept {
      buffer(std::move(o)).swap(*this);
      return *this;
    }
    ~buffer() { cuda_backend::release(data_); }

    std::size_t size() const { return size_; }
    U* data() { return data_; }
    const U* data() const { return data_; }

    void resize(std::size_t n) {
      if (n > capacity_) {
        cuda_backend::release(data_);
        data_ = nullptr;
        size_ = capacity_ = 0;
        void* p = nullptr;
        detail::cuda_check(cuda_backend::allocate(&p, n * sizeof(U)));
        data_ = static_cast<U*>(p);
        capacity_ = n;
      }
      size_ = n;
    }

   private:
    void swap(buffer& o) noexcept {
      std::swap(data_, o.data_);
      std::swap(size_, o.size_);
      std::swap(capacity_, o.capacity_);
    }
    U* data_ = nullptr;
    std::size_t size_ = 0, capacity_ = 0;
  };

  /// Precision of the convolutions' matrix products.
  enum class math {
    strict_float32,  ///< float32 products (the default; what the CPU computes, up to order)
    tf32,            ///< TF32 tensor cores: float32 storage and sums, 10-bit operand mantissas
    bf16             ///< bfloat16 tensor cores: float32 storage and sums, 7-bit operand mantissas
  };

  /// What every op receives: the GPU, a stream, a cuBLAS handle and scratch memory. Created on
  /// the current GPU (cudaSetDevice before, to choose another); throws soundnet::error when
  /// there is none.
  class context {
   public:
    context() { detail::cuda_check(cuda_backend::create(&state_, -1)); }
    context(const context&) = delete;
    context& operator=(const context&) = delete;
    context(context&& o) noexcept : state_(std::exchange(o.state_, nullptr)), sync_(o.sync_) {}
    context& operator=(context&& o) noexcept {
      std::swap(state_, o.state_);
      std::swap(sync_, o.sync_);
      return *this;
    }
    ~context() { cuda_backend::destroy(state_); }

    cuda_backend::state* state() const { return state_; }
    /// The cudaStream_t the ops run on.
    void* stream() const { return cuda_backend::stream(state_); }
    /// Waits for the queued work; throws the first asynchronous error.
    void synchronize() const { detail::cuda_check(cuda_backend::synchronize(state_)); }
    /// The GPU's name and compute capability.
    std::string device_name() const {
      char text[256] = {};
      detail::cuda_check(cuda_backend::describe(state_, text, sizeof text));
      return text;
    }
    /// The precision of the float32 convolutions' matrix products (cuBLAS's compute type); the
    /// direct conv1 kernel and every other op stay float32, and float64 models are unaffected.
    void set_math(math m) { detail::cuda_check(cuda_backend::set_math(state_, static_cast<int>(m))); }

    /// Synchronised batch norm (see batch_norm_sync); null: this process's batch alone.
    void set_batch_norm_sync(batch_norm_sync* s) { sync_ = s; }
    batch_norm_sync* batch_norm_sync_with() const { return sync_; }
    cuda_backend::sync_hook hook() const {
      if (!sync_) return {};
      return {[](void* user, double* values, long count) { static_cast<batch_norm_sync*>(user)->sum(values, count); },
              sync_};
    }

   private:
    cuda_backend::state* state_ = nullptr;
    batch_norm_sync* sync_ = nullptr;
  };

  /// Model inputs uploaded beside the computation: the next batch goes from pinned host memory
  /// to the GPU on a copy stream of its own while the context's stream is still busy (with the
  /// previous step's backward pass and Adam step), and the context's stream waits for the copy
  /// before the work queued after upload():
  ///
  ///   cuda::upload_stage<float> stage(net.context());
  ///   float* host = stage.host(n);          // pinned; waits until the last upload has left it
  ///   ... write the batch there ...
  ///   const float* x = stage.upload(n);     // returns at once
  ///   net.forward_device(x, batch, samples, mode::training);
  ///
  /// The device memory upload() returns stays valid until the upload after next (two buffers
  /// are used in turn). The stage must not outlive its context.
  template <class U>
  class upload_stage {
   public:
    explicit upload_stage(context& ctx) { detail::cuda_check(cuda_backend::stage_create(ctx.state(), &stage_)); }
    upload_stage(const upload_stage&) = delete;
    upload_stage& operator=(const upload_stage&) = delete;
    ~upload_stage() { cuda_backend::stage_destroy(stage_); }

    /// Pinned host memory for `count` values of the next upload.
    U* host(std::size_t count) {
      void* p = nullptr;
      detail::cuda_check(cuda_backend::stage_host(stage_, count * sizeof(U), &p));
      return static_cast<U*>(p);
    }
    /// Queues the copy of the first `count` values of host() to the GPU; the device memory.
    const U* upload(std::size_t count) {
      void* p = nullptr;
      detail::cuda_check(cuda_backend::stage_upload(stage_, count * sizeof(U), &p));
      return static_cast<const U*>(p);
    }

   private:
    cuda_backend::stage* stage_ = nullptr;
  };
};

/// The CUDA device's operation table (backend/device.hpp): each op queues kernels or cuBLAS
/// calls on the context's stream (components/cuda/src/backend.cu).
template <class T>
struct ops<cuda, T> {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "SOUNDNET_CUDA_DEVICE_SUPPORTS_FLOAT_AND_DOUBLE");
  using context = cuda::context;

  static void fill(context& ctx, T* x, long size, T value) { detail::cuda_check(cuda_backend::fill(ctx.state(), x, size, value)); }
  static void copy(context& ctx, const T* src, long size, T* dst) {
    detail::cuda_check(cuda_backend::copy_on_device(ctx.state(), src, sizeof(T) * std::size_t(size), dst));
  }
  static void copy_to_host(context& ctx, const T* src, long size, T* host_dst) {
    detail::cuda_check(cuda_backend::copy_to_host(ctx.state(), src, sizeof(T) * std::size_t(size), host_dst));
  }
  static void copy_from_host(context& ctx, const T* host_src, long size, T* dst) {
    detail::cuda_check(cuda_backend::copy_from_host(ctx.state(), host_src, sizeof(T) * std::size_t(size), dst));
  }
  /// 16-bit samples from host memory to the device (model::forward_pcm16).
  static void upload_int16(context& ctx, const std::int16_t* host_src, long size, std::int16_t* dst) {
    detail::cuda_check(cuda_backend::copy_from_host(ctx.state(), host_src, sizeof(std::int16_t) * std::size_t(size), dst));
  }
  /// dst = scale * src for 16-bit samples already on the device (upload int16, convert there).
  static void convert_int16(context& ctx, const std::int16_t* src, long size, T scale, T* dst) {
    detail::cuda_check(cuda_backend::convert_int16(ctx.state(), src, size, scale, dst));
  }

  static void conv1d_forward(context& ctx, const T* x, const T* w, const T* b, T* y, const conv_geometry& g) {
    detail::cuda_check(cuda_backend::conv1d_forward(ctx.state(), x, w, b, y, shape(g)));
  }
  static void conv1d_bn_relu_forward(context& ctx, const T* x, const T* w, const T* b, const T* gamma, const T* beta,
                                     const T* mean, const T* var, double eps, T* y, const conv_geometry& g) {
    detail::cuda_check(
        cuda_backend::conv1d_bn_relu_forward(ctx.state(), x, w, b, gamma, beta, mean, var, eps, y, shape(g)));
  }
  static void conv1d_backward(context& ctx, const T* x, const T* w, const T* dy, T* dx, T* dw, T* db,
                              const conv_geometry& g) {
    detail::cuda_check(cuda_backend::conv1d_backward(ctx.state(), x, w, dy, dx, dw, db, shape(g)));
  }

  static void batch_norm_forward_train(context& ctx, const T* x, long n, long c, long t, const T* gamma,
                                       const T* beta, double eps, double momentum, T* running_mean, T* running_var,
                                       T* save_mean, T* save_invstd, T* y) {
    detail::cuda_check(cuda_backend::batch_norm_forward_train(ctx.state(), x, n, c, t, gamma, beta, eps, momentum,
                                                              running_mean, running_var, save_mean, save_invstd, y,
                                                              ctx.hook()));
  }
  static void batch_norm_forward_eval(context& ctx, const T* x, long n, long c, long t, const T* gamma, const T* beta,
                                      const T* running_mean, const T* running_var, double eps, T* y) {
    detail::cuda_check(
        cuda_backend::batch_norm_forward_eval(ctx.state(), x, n, c, t, gamma, beta, running_mean, running_var, eps, y));
  }
  static void batch_norm_invstd(context& ctx, const T* var, long c, double eps, T* invstd) {
    detail::cuda_check(cuda_backend::batch_norm_invstd(ctx.state(), var, c, eps, invstd));
  }
  static void batch_norm_backward(context& ctx, const T* x, const T* dy, long n, long c, long t, const T* gamma,
                                  const T* mean, const T* invstd, bool training, T* dx, T* dgamma, T* dbeta) {
    detail::cuda_check(cuda_backend::batch_norm_backward(ctx.state(), x, dy, n, c, t, gamma, mean, invstd, training,
                                                         dx, dgamma, dbeta,
                                                         training ? ctx.hook() : cuda_backend::sync_hook{}));
  }

  static void relu_forward(context& ctx, const T* x, T* y, long size) {
    detail::cuda_check(cuda_backend::relu_forward(ctx.state(), x, y, size));
  }
  static void relu_backward(context& ctx, const T* y, const T* dy, T* dx, long size) {
    detail::cuda_check(cuda_backend::relu_backward(ctx.state(), y, dy, dx, size));
  }
  static void max_pool_forward(context& ctx, const T* x, long rows, long t_in, long kernel, long stride, long t_out,
                               T* y, std::int32_t* argmax) {
    detail::cuda_check(cuda_backend::max_pool_forward(ctx.state(), x, rows, t_in, kernel, stride, t_out, y, argmax));
  }
  static void max_pool_backward(context& ctx, const T* dy, const std::int32_t* argmax, long rows, long t_in,
                                long t_out, T* dx) {
    detail::cuda_check(cuda_backend::max_pool_backward(ctx.state(), dy, argmax, rows, t_in, t_out, dx));
  }

  static double softmax_kl(context& ctx, const T* logits, long n, long c_total, long c_begin, long c, long t,
                           const T* targets, double divisor, T* grad) {
    double loss = 0;
    detail::cuda_check(
        cuda_backend::softmax_kl(ctx.state(), logits, n, c_total, c_begin, c, t, targets, divisor, grad, &loss));
    return loss;
  }
  static bool all_finite(context& ctx, const T* x, long size) {
    bool finite = true;
    detail::cuda_check(cuda_backend::all_finite(ctx.state(), x, size, &finite));
    return finite;
  }
  static void adam_update(context& ctx, T* param, const T* grad, T* m, T* v, long size, double lr, double beta1,
                          double beta2, double eps, long step) {
    detail::cuda_check(cuda_backend::adam_update(ctx.state(), param, grad, m, v, size, lr, beta1, beta2, eps, step));
  }

 private:
  static cuda_backend::conv_shape shape(const conv_geometry& g) {
    return {g.n, g.c_in, g.t_in, g.c_out, g.kernel, g.stride, g.padding, g.t_out};
  }
};

SOUNDNET_ABI_END
}  // namespace soundnet
