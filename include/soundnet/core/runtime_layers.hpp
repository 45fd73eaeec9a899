// Runtime layers: one per layer spec, holding parameters and per-call state.
//
// Contract of runtime_layer<Spec, T, Device> (every specialisation below):
//   setup(c_in, block)                       sizes parameters for c_in input channels;
//                                            block is the 1-based convolution block index
//   initialize(rng)                          the paper's initialisation
//   allocate_gradients()                     creates (zeroed) gradient buffers
//   collect(params)                          appends its parameter views (names of the
//                                            PyTorch state dict of the obvious module)
//   taps(names)                              appends the names of its output(s)
//   forward(x, n, t_in, y, t_out, mode, ws)  requires x (N, C_in, T_in), y (N, C_out, T_out)
//   backward(x, y, dy, n, t_in, t_out, dx, ws)
//                                            requires a forward on the same x; accumulates
//                                            parameter gradients; writes dx unless null
// Layers call ops<Device, T> only: no device API appears here.
#pragma once

#ifndef SOUNDNET_INSIDE_SOUNDNET
#error "include <soundnet/soundnet.hpp> instead of soundnet/core/runtime_layers.hpp"
#endif

#include <cstdint>
#include <string>
#include <vector>

#include "../backend/device.hpp"
#include "layers.hpp"
#include "random.hpp"

namespace soundnet {

/// inference: batch norm uses running statistics. training: batch statistics, and the
/// running statistics are updated.
enum class mode { inference, training };

/// Which read-outs an inference forward keeps. block_outputs: conv + batch norm + ReLU run
/// fused in one pass, so each block's conv{i}_linear and bn{i} are not kept (faster, less
/// memory); all: every read-out. Training always keeps all.
enum class keep { block_outputs, all };

/// A view of one named tensor of a model: a trainable parameter or a running statistic of
/// batch norm. grad is null for running statistics, and for parameters until the model's
/// gradients exist (model::require_gradients; zero_grad, backward and adam create them).
template <class T>
struct parameter {
  std::string name;
  std::vector<std::size_t> shape;
  T* value = nullptr;
  T* grad = nullptr;
  std::size_t size = 0;
  bool is_trainable = false;
  bool trainable() const { return is_trainable; }
};

namespace detail {

template <class Buffer>
auto grad_or_null(Buffer& b) -> decltype(b.data()) {
  return b.empty() ? nullptr : b.data();
}

template <class Spec, class T, class Device, layer_kind Kind = Spec::kind>
struct runtime_layer;

// ---- convolution (and the two-headed output, which is a convolution split in two) --------

template <class Spec, class T, class Device>
struct conv_layer {
  using O = ops<Device, T>;
  using buffer = typename Device::template buffer<T>;

  long c_in = 0;
  int block = 0;
  buffer w, b, dw, db;  // w (C_out, C_in, K), b (C_out)

  void setup(int channels_in, int block_index) {
    c_in = channels_in;
    block = block_index;
    const long wsize = long(Spec::out) * c_in * Spec::kernel;
    w.assign(wsize, T(0));
    b.assign(Spec::out, T(0));
  }

  void allocate_gradients() {
    dw.assign(w.size(), T(0));
    db.assign(b.size(), T(0));
  }

  void initialize(normal_generator& rng) {  // weights N(0, 0.01), biases 0
    for (auto& x : w) x = static_cast<T>(rng(0.0, 0.01));
    std::fill(b.begin(), b.end(), T(0));
  }

  conv_geometry geometry(long n, long t_in, long t_out) const {
    return {n, c_in, t_in, Spec::out, Spec::kernel, Spec::stride, Spec::padding, t_out};
  }

  void forward(const T* x, long n, long t_in, T* y, long t_out, mode, buffer& ws) {
    O::conv1d_forward(x, w.data(), b.data(), y, geometry(n, t_in, t_out), ws);
  }

  void backward(const T* x, const T*, const T* dy, long n, long t_in, long t_out, T* dx, buffer& ws) {
    O::conv1d_backward(x, w.data(), dy, dx, dw.data(), db.data(), geometry(n, t_in, t_out), ws);
  }
};

template <class Spec, class T, class Device>
struct runtime_layer<Spec, T, Device, layer_kind::conv1d> : conv_layer<Spec, T, Device> {
  std::string prefix() const { return "conv" + std::to_string(this->block); }
  void collect(std::vector<parameter<T>>& out) {
    const std::size_t o = Spec::out, ci = this->c_in, k = Spec::kernel;
    out.push_back({prefix() + ".weight", {o, ci, k}, this->w.data(), grad_or_null(this->dw), o * ci * k, true});
    out.push_back({prefix() + ".bias", {o}, this->b.data(), grad_or_null(this->db), o, true});
  }
  void taps(std::vector<std::string>& names) const { names.push_back(prefix() + "_linear"); }
};

template <class Spec, class T, class Device>
struct runtime_layer<Spec, T, Device, layer_kind::two_head_conv1d> : conv_layer<Spec, T, Device> {
  std::string prefix() const { return "conv" + std::to_string(this->block); }
  void collect(std::vector<parameter<T>>& out) {
    const std::size_t ob = Spec::objects, sc = Spec::scenes, ci = this->c_in, k = Spec::kernel;
    T* w = this->w.data();
    T* dw = grad_or_null(this->dw);
    T* db = grad_or_null(this->db);
    out.push_back({prefix() + "_objects.weight", {ob, ci, k}, w, dw, ob * ci * k, true});
    out.push_back({prefix() + "_objects.bias", {ob}, this->b.data(), db, ob, true});
    out.push_back({prefix() + "_scenes.weight", {sc, ci, k}, w + ob * ci * k, dw ? dw + ob * ci * k : nullptr,
                   sc * ci * k, true});
    out.push_back({prefix() + "_scenes.bias", {sc}, this->b.data() + ob, db ? db + ob : nullptr, sc, true});
  }
  void taps(std::vector<std::string>& names) const {
    names.push_back(prefix() + "_objects");
    names.push_back(prefix() + "_scenes");
  }
};

// ---- batch normalisation ---------------------------------------------------------------

template <class Spec, class T, class Device>
struct runtime_layer<Spec, T, Device, layer_kind::batch_norm> {
  using O = ops<Device, T>;
  using buffer = typename Device::template buffer<T>;
  static constexpr double eps = 1e-5, momentum = 0.1;

  long channels = 0;
  int block = 0;
  buffer gamma, beta, dgamma, dbeta, running_mean, running_var;  // (C)
  buffer saved_mean, saved_invstd;                               // (C), from the last forward
  mode last_mode = mode::inference;

  void setup(int c, int block_index) {
    channels = c;
    block = block_index;
    for (auto* v : {&gamma, &beta, &running_mean, &saved_mean, &saved_invstd}) v->assign(c, T(0));
    running_var.assign(c, T(1));
    std::fill(gamma.begin(), gamma.end(), T(1));
  }

  void initialize(normal_generator& rng) {  // gamma N(1, 0.02), beta 0, running stats (0, 1)
    for (auto& x : gamma) x = static_cast<T>(rng(1.0, 0.02));
    std::fill(beta.begin(), beta.end(), T(0));
    std::fill(running_mean.begin(), running_mean.end(), T(0));
    std::fill(running_var.begin(), running_var.end(), T(1));
  }

  std::string prefix() const { return "bn" + std::to_string(block); }

  void allocate_gradients() {
    dgamma.assign(channels, T(0));
    dbeta.assign(channels, T(0));
  }

  void collect(std::vector<parameter<T>>& out) {
    const std::size_t c = channels;
    out.push_back({prefix() + ".weight", {c}, gamma.data(), grad_or_null(dgamma), c, true});
    out.push_back({prefix() + ".bias", {c}, beta.data(), grad_or_null(dbeta), c, true});
    out.push_back({prefix() + ".running_mean", {c}, running_mean.data(), nullptr, c, false});
    out.push_back({prefix() + ".running_var", {c}, running_var.data(), nullptr, c, false});
  }
  void taps(std::vector<std::string>& names) const { names.push_back(prefix()); }

  void forward(const T* x, long n, long t, T* y, long, mode m, buffer&) {
    last_mode = m;
    if (m == mode::training) {
      O::batch_norm_forward_train(x, n, channels, t, gamma.data(), beta.data(), eps, momentum,
                                  running_mean.data(), running_var.data(), saved_mean.data(),
                                  saved_invstd.data(), y);
    } else {
      O::batch_norm_forward_eval(x, n, channels, t, gamma.data(), beta.data(), running_mean.data(),
                                 running_var.data(), eps, y);
    }
  }

  void backward(const T* x, const T*, const T* dy, long n, long t, long, T* dx, buffer&) {
    if (last_mode == mode::inference) {  // running statistics are constants
      for (long c = 0; c < channels; ++c) {
        saved_mean[c] = running_mean[c];
        saved_invstd[c] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps));
      }
    }
    O::batch_norm_backward(x, dy, n, channels, t, gamma.data(), saved_mean.data(), saved_invstd.data(),
                           last_mode == mode::training, dx, dgamma.data(), dbeta.data());
  }
};

// ---- ReLU ------------------------------------------------------------------------------

template <class Spec, class T, class Device>
struct runtime_layer<Spec, T, Device, layer_kind::relu> {
  using O = ops<Device, T>;
  using buffer = typename Device::template buffer<T>;
  long channels = 0;
  int block = 0;

  void setup(int c, int block_index) { channels = c, block = block_index; }
  void initialize(normal_generator&) {}
  void allocate_gradients() {}
  void collect(std::vector<parameter<T>>&) {}
  void taps(std::vector<std::string>& names) const { names.push_back("conv" + std::to_string(block)); }

  void forward(const T* x, long n, long t, T* y, long, mode, buffer&) {
    O::relu_forward(x, y, n * channels * t);
  }
  void backward(const T*, const T* y, const T* dy, long n, long t, long, T* dx, buffer&) {
    if (dx) O::relu_backward(y, dy, dx, n * channels * t);
  }
};

// ---- max-pool --------------------------------------------------------------------------

template <class Spec, class T, class Device>
struct runtime_layer<Spec, T, Device, layer_kind::max_pool1d> {
  using O = ops<Device, T>;
  using buffer = typename Device::template buffer<T>;
  long channels = 0;
  int block = 0;
  typename Device::template buffer<std::int32_t> argmax;  // (N, C, T_out), from the last forward

  void setup(int c, int block_index) { channels = c, block = block_index; }
  void initialize(normal_generator&) {}
  void allocate_gradients() {}
  void collect(std::vector<parameter<T>>&) {}
  void taps(std::vector<std::string>& names) const { names.push_back("pool" + std::to_string(block)); }

  void forward(const T* x, long n, long t_in, T* y, long t_out, mode m, buffer&) {
    std::int32_t* idx = nullptr;
    if (m == mode::training) {
      argmax.resize(n * channels * t_out);
      idx = argmax.data();
    } else {
      argmax.clear();
    }
    O::max_pool_forward(x, n * channels, t_in, Spec::kernel, Spec::stride, t_out, y, idx);
  }

  void backward(const T* x, const T*, const T* dy, long n, long t_in, long t_out, T* dx, buffer&) {
    if (!dx) return;
    if (static_cast<long>(argmax.size()) != n * channels * t_out) {  // after an inference forward
      argmax.resize(n * channels * t_out);
      buffer scratch(n * channels * t_out);
      O::max_pool_forward(x, n * channels, t_in, Spec::kernel, Spec::stride, t_out, scratch.data(),
                          argmax.data());
    }
    O::max_pool_backward(dy, argmax.data(), n * channels, t_in, t_out, dx);
  }
};

}  // namespace detail
}  // namespace soundnet
