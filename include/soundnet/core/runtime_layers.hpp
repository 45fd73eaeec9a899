// Runtime layers: one per layer spec, holding offsets into the model's arenas and per-call
// state (saved batch statistics, max-pool indices).
//
// Contract of runtime_layer<Spec, T, Device> (every specialisation below):
//   declare(c_in, block, layout)             sizes its tensors for c_in input channels and
//                                            reserves them in the arenas (layout): trainable
//                                            parameters in the parameter arena, batch-norm
//                                            running statistics in the statistics arena, each
//                                            with the name of the PyTorch state dict of the
//                                            obvious module; block is the 1-based block index
//   initialize(params, stats, rng)           writes the paper's initialisation into host
//                                            copies of the two arenas (the model copies them to
//                                            the device: every device starts from the same values)
//   taps(names)                              appends the names of its output(s)
//   forward(ctx, a, x, n, t_in, y, t_out, mode)
//                                            requires x (N, C_in, T_in), y (N, C_out, T_out);
//                                            a: the arenas' device pointers
//   backward(ctx, a, x, y, dy, n, t_in, t_out, dx)
//                                            requires a forward on the same x; accumulates
//                                            parameter gradients into a.grad; writes dx unless null
// Layers do no arithmetic: they call ops<Device, T> only, and no device API appears here.
#pragma once

#ifndef SOUNDNET_INSIDE_SOUNDNET
#error "include <soundnet/soundnet.hpp> instead of soundnet/core/runtime_layers.hpp"
#endif

#include "abi.hpp"
#include <cstdint>
#include <string>
#include <vector>

#include "../backend/device.hpp"
#include "layers.hpp"
#include "random.hpp"

namespace soundnet {
SOUNDNET_ABI_BEGIN

/// inference: batch norm uses running statistics. training: batch statistics, and the
/// running statistics are updated.
enum class mode { inference, training };

/// Which read-outs an inference forward keeps. block_outputs: conv + batch norm + ReLU run
/// fused in one pass, so each block's conv{i}_linear and bn{i} are not kept (faster, less
/// memory); all: every read-out. Training always keeps all.
enum class keep { block_outputs, all };

/// A view of one named tensor of a model: a trainable parameter or a running statistic of
/// batch norm. value and grad are device pointers (host memory on the CPU) into the model's
/// arenas; grad is null for running statistics, and for parameters until the model's gradients
/// exist (model::require_gradients; zero_grad, backward and adam create them). offset: where
/// the tensor starts in its arena (the parameter arena, or the statistics arena).
template <class T>
struct parameter {
  std::string name;
  std::vector<std::size_t> shape;
  T* value = nullptr;
  T* grad = nullptr;
  std::size_t size = 0;
  bool is_trainable = false;
  std::size_t offset = 0;
  bool trainable() const { return is_trainable; }
};

namespace detail {

/// Where every tensor of a model lives: the layers reserve ranges of the parameter arena
/// (trainable) and of the statistics arena, and name views of them.
class arena_layout {
 public:
  struct view {
    std::string name;
    std::vector<std::size_t> shape;
    std::size_t offset, size;
    bool trainable;
  };

  /// Every range starts at a multiple of this many values (64 bytes of float).
  static constexpr std::size_t align = 16;

  /// Reserves `count` values; returns their offset in the arena.
  std::size_t reserve(std::size_t count, bool trainable) {
    std::size_t& end = trainable ? parameters_ : statistics_;
    const std::size_t offset = end;
    end += (count + align - 1) / align * align;
    return offset;
  }

  /// Names the tensor of `shape` at `offset` of an arena.
  void name(std::string name, std::vector<std::size_t> shape, std::size_t offset, bool trainable) {
    std::size_t size = 1;
    for (auto d : shape) size *= d;
    views_.push_back({std::move(name), std::move(shape), offset, size, trainable});
  }

  std::size_t parameters() const { return parameters_; }
  std::size_t statistics() const { return statistics_; }
  const std::vector<view>& views() const { return views_; }

 private:
  std::size_t parameters_ = 0, statistics_ = 0;
  std::vector<view> views_;
};

/// Device pointers to the bases of a model's arenas.
template <class T>
struct arenas {
  T* param;  // trainable parameters
  T* grad;   // their gradients (same layout), null before the model's gradients exist
  T* stat;   // running statistics
};

template <class Spec, class T, class Device, layer_kind Kind = Spec::kind>
struct runtime_layer;

// ---- convolution (and the two-headed output, which is a convolution split in two) --------

template <class Spec, class T, class Device>
struct conv_layer {
  using O = ops<Device, T>;
  using context = typename Device::context;

  long c_in = 0;
  int block = 0;
  std::size_t w = 0, b = 0;  // offsets of w (C_out, C_in, K) and b (C_out) in the parameter arena

  std::string prefix() const { return "conv" + std::to_string(block); }

  void reserve(int channels_in, int block_index, arena_layout& layout) {
    c_in = channels_in;
    block = block_index;
    w = layout.reserve(std::size_t(Spec::out) * c_in * Spec::kernel, true);
    b = layout.reserve(Spec::out, true);
  }

  void initialize(T* params, T*, normal_generator& rng) {  // weights N(0, 0.01), biases 0
    for (std::size_t i = 0; i < std::size_t(Spec::out) * c_in * Spec::kernel; ++i)
      params[w + i] = static_cast<T>(rng(0.0, 0.01));
  }

  conv_geometry geometry(long n, long t_in, long t_out) const {
    return {n, c_in, t_in, Spec::out, Spec::kernel, Spec::stride, Spec::padding, t_out};
  }

  void forward(context& ctx, const arenas<T>& a, const T* x, long n, long t_in, T* y, long t_out, mode) {
    O::conv1d_forward(ctx, x, a.param + w, a.param + b, y, geometry(n, t_in, t_out));
  }

  void backward(context& ctx, const arenas<T>& a, const T* x, const T*, const T* dy, long n, long t_in, long t_out,
                T* dx) {
    O::conv1d_backward(ctx, x, a.param + w, dy, dx, a.grad + w, a.grad + b, geometry(n, t_in, t_out));
  }
};

template <class Spec, class T, class Device>
struct runtime_layer<Spec, T, Device, layer_kind::conv1d> : conv_layer<Spec, T, Device> {
  void declare(int channels_in, int block_index, arena_layout& layout) {
    this->reserve(channels_in, block_index, layout);
    const std::size_t o = Spec::out, ci = this->c_in, k = Spec::kernel;
    layout.name(this->prefix() + ".weight", {o, ci, k}, this->w, true);
    layout.name(this->prefix() + ".bias", {o}, this->b, true);
  }
  void taps(std::vector<std::string>& names) const { names.push_back(this->prefix() + "_linear"); }
};

template <class Spec, class T, class Device>
struct runtime_layer<Spec, T, Device, layer_kind::two_head_conv1d> : conv_layer<Spec, T, Device> {
  void declare(int channels_in, int block_index, arena_layout& layout) {  // one convolution, two named halves
    this->reserve(channels_in, block_index, layout);
    const std::size_t ob = Spec::objects, sc = Spec::scenes, ci = this->c_in, k = Spec::kernel;
    if constexpr (Spec::heads == 1) {
      layout.name(this->prefix() + ".weight", {ob, ci, k}, this->w, true);
      layout.name(this->prefix() + ".bias", {ob}, this->b, true);
    } else {
      layout.name(this->prefix() + "_objects.weight", {ob, ci, k}, this->w, true);
      layout.name(this->prefix() + "_objects.bias", {ob}, this->b, true);
      layout.name(this->prefix() + "_scenes.weight", {sc, ci, k}, this->w + ob * ci * k, true);
      layout.name(this->prefix() + "_scenes.bias", {sc}, this->b + ob, true);
    }
  }
  void taps(std::vector<std::string>& names) const {
    if constexpr (Spec::heads == 1) {
      names.push_back(this->prefix());
    } else {
      names.push_back(this->prefix() + "_objects");
      names.push_back(this->prefix() + "_scenes");
    }
  }
};

// ---- batch normalisation ---------------------------------------------------------------

template <class Spec, class T, class Device>
struct runtime_layer<Spec, T, Device, layer_kind::batch_norm> {
  using O = ops<Device, T>;
  using context = typename Device::context;
  using buffer = typename Device::template buffer<T>;
  static constexpr double eps = 1e-5, momentum = 0.1;

  long channels = 0;
  int block = 0;
  std::size_t gamma = 0, beta = 0;               // parameter arena, (C) each
  std::size_t running_mean = 0, running_var = 0;  // statistics arena, (C) each
  buffer saved_mean, saved_invstd;               // (C), from the last forward
  mode last_mode = mode::inference;

  std::string prefix() const { return "bn" + std::to_string(block); }

  void declare(int c, int block_index, arena_layout& layout) {
    channels = c;
    block = block_index;
    gamma = layout.reserve(c, true);
    beta = layout.reserve(c, true);
    running_mean = layout.reserve(c, false);
    running_var = layout.reserve(c, false);
    const std::size_t n = c;
    layout.name(prefix() + ".weight", {n}, gamma, true);
    layout.name(prefix() + ".bias", {n}, beta, true);
    layout.name(prefix() + ".running_mean", {n}, running_mean, false);
    layout.name(prefix() + ".running_var", {n}, running_var, false);
    saved_mean.resize(n);
    saved_invstd.resize(n);
  }

  void initialize(T* params, T* stats, normal_generator& rng) {  // gamma N(1, 0.02), beta 0, running stats (0, 1)
    for (long i = 0; i < channels; ++i) {
      params[gamma + i] = static_cast<T>(rng(1.0, 0.02));
      stats[running_var + i] = T(1);
    }
  }

  void taps(std::vector<std::string>& names) const { names.push_back(prefix()); }

  void forward(context& ctx, const arenas<T>& a, const T* x, long n, long t, T* y, long, mode m) {
    last_mode = m;
    if (m == mode::training) {
      O::batch_norm_forward_train(ctx, x, n, channels, t, a.param + gamma, a.param + beta, eps, momentum,
                                  a.stat + running_mean, a.stat + running_var, saved_mean.data(), saved_invstd.data(), y);
    } else {
      O::batch_norm_forward_eval(ctx, x, n, channels, t, a.param + gamma, a.param + beta, a.stat + running_mean,
                                 a.stat + running_var, eps, y);
    }
  }

  void backward(context& ctx, const arenas<T>& a, const T* x, const T*, const T* dy, long n, long t, long, T* dx) {
    if (last_mode == mode::inference) {  // running statistics are constants
      O::copy(ctx, a.stat + running_mean, channels, saved_mean.data());
      O::batch_norm_invstd(ctx, a.stat + running_var, channels, eps, saved_invstd.data());
    }
    O::batch_norm_backward(ctx, x, dy, n, channels, t, a.param + gamma, saved_mean.data(), saved_invstd.data(),
                           last_mode == mode::training, dx, a.grad + gamma, a.grad + beta);
  }
};

// ---- ReLU ------------------------------------------------------------------------------

template <class Spec, class T, class Device>
struct runtime_layer<Spec, T, Device, layer_kind::relu> {
  using O = ops<Device, T>;
  using context = typename Device::context;
  long channels = 0;
  int block = 0;

  void declare(int c, int block_index, arena_layout&) { channels = c, block = block_index; }
  void initialize(T*, T*, normal_generator&) {}
  void taps(std::vector<std::string>& names) const { names.push_back("conv" + std::to_string(block)); }

  void forward(context& ctx, const arenas<T>&, const T* x, long n, long t, T* y, long, mode) {
    O::relu_forward(ctx, x, y, n * channels * t);
  }
  void backward(context& ctx, const arenas<T>&, const T*, const T* y, const T* dy, long n, long t, long, T* dx) {
    if (dx) O::relu_backward(ctx, y, dy, dx, n * channels * t);
  }
};

// ---- max-pool --------------------------------------------------------------------------

template <class Spec, class T, class Device>
struct runtime_layer<Spec, T, Device, layer_kind::max_pool1d> {
  using O = ops<Device, T>;
  using context = typename Device::context;
  long channels = 0;
  int block = 0;
  typename Device::template buffer<std::int32_t> argmax;  // (N, C, T_out), from the last training forward
  typename Device::template buffer<T> scratch;            // (N, C, T_out), a backward after inference
  bool has_argmax = false;

  void declare(int c, int block_index, arena_layout&) { channels = c, block = block_index; }
  void initialize(T*, T*, normal_generator&) {}
  void taps(std::vector<std::string>& names) const { names.push_back("pool" + std::to_string(block)); }

  void forward(context& ctx, const arenas<T>&, const T* x, long n, long t_in, T* y, long t_out, mode m) {
    std::int32_t* idx = nullptr;
    has_argmax = m == mode::training;
    if (has_argmax) {
      argmax.resize(static_cast<std::size_t>(n * channels * t_out));
      idx = argmax.data();
    }
    O::max_pool_forward(ctx, x, n * channels, t_in, Spec::kernel, Spec::stride, t_out, y, idx);
  }

  void backward(context& ctx, const arenas<T>&, const T* x, const T*, const T* dy, long n, long t_in, long t_out,
                T* dx) {
    if (!dx) return;
    const std::size_t size = static_cast<std::size_t>(n * channels * t_out);
    if (!has_argmax || argmax.size() != size) {  // after an inference forward: find the maxima again
      argmax.resize(size);
      scratch.resize(size);
      O::max_pool_forward(ctx, x, n * channels, t_in, Spec::kernel, Spec::stride, t_out, scratch.data(), argmax.data());
      has_argmax = true;
    }
    O::max_pool_backward(ctx, dy, argmax.data(), n * channels, t_in, t_out, dx);
  }
};

}  // namespace detail
SOUNDNET_ABI_END
}  // namespace soundnet
