// Adam in PyTorch's formulation: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
#pragma once

#ifndef SOUNDNET_INSIDE_SOUNDNET
#error "include <soundnet/soundnet.hpp> instead of soundnet/adam.hpp"
#endif

#include "core/abi.hpp"
#include <cmath>
#include <string>
#include <vector>

#include "backend/device.hpp"
#include "core/error.hpp"
#include "core/runtime_layers.hpp"

namespace soundnet {
SOUNDNET_ABI_BEGIN

struct adam_options {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

/// Adam over a model's parameter arena (running statistics are not in it): the moments are
/// two buffers of the arena's layout, and a step is one operation over the whole arena.
/// Requires: the model outlives the optimiser.
template <class T, class Device = cpu>
class adam {
 public:
  using buffer = typename Device::template buffer<T>;
  using O = ops<Device, T>;

  /// A moment buffer of the optimiser, named after its parameter (device pointers).
  struct state_view {
    std::string name;
    std::vector<std::size_t> shape;
    T* m;
    T* v;
    std::size_t size;
  };

  template <class Model>
  explicit adam(Model& net, adam_options options = {}) : options_(options), ctx_(&net.context()) {
    static_assert(std::is_same_v<typename Model::device, Device> && std::is_same_v<typename Model::value_type, T>,
                  "SOUNDNET_ADAM_MUST_MATCH_THE_MODEL_DEVICE_AND_SCALAR");
    check(options_);
    net.require_gradients();
    params_ = net.parameter_arena();
    grads_ = net.gradients();
    m_.resize(params_.size());
    v_.resize(params_.size());
    reset();
    for (auto& p : net.parameters())
      if (p.trainable()) views_.push_back({p.name, p.shape, p.offset, p.size});
  }

  /// One update of the whole parameter arena from its gradients.
  void step() {
    ++step_;
    O::adam_update(*ctx_, params_.data(), grads_.data(), m_.data(), v_.data(), static_cast<long>(params_.size()),
                   options_.lr, options_.beta1, options_.beta2, options_.eps, step_);
  }

  /// Zero moments and step count (a fresh optimiser).
  void reset() {
    O::fill(*ctx_, m_.data(), static_cast<long>(m_.size()), T(0));
    O::fill(*ctx_, v_.data(), static_cast<long>(v_.size()), T(0));
    step_ = 0;
  }

  long steps() const { return step_; }
  void set_steps(long steps) {
    if (steps < 0) throw error("Adam step count must not be negative");
    step_ = steps;
  }
  const adam_options& options() const { return options_; }
  void set_options(const adam_options& o) { check(o), options_ = o; }

  /// The moments as contiguous spans in the parameter arena's layout.
  device_span<T> first_moments() { return {m_.data(), m_.size()}; }
  device_span<T> second_moments() { return {v_.data(), v_.size()}; }

  /// Views of the first and second moments of each trainable tensor, for checkpoints.
  std::vector<state_view> state() {
    std::vector<state_view> out;
    for (const auto& p : views_) out.push_back({p.name, p.shape, m_.data() + p.offset, v_.data() + p.offset, p.size});
    return out;
  }

  /// The device context of the model.
  typename Device::context& context() { return *ctx_; }

 private:
  struct view {
    std::string name;
    std::vector<std::size_t> shape;
    std::size_t offset, size;
  };

  static void check(const adam_options& o) {
    if (!(o.lr > 0) || !std::isfinite(o.lr)) throw error("Adam learning rate must be positive and finite");
    if (!(o.beta1 >= 0 && o.beta1 < 1)) throw error("Adam beta1 must be in [0, 1)");
    if (!(o.beta2 >= 0 && o.beta2 < 1)) throw error("Adam beta2 must be in [0, 1)");
    if (!(o.eps > 0)) throw error("Adam eps must be positive");
  }

  adam_options options_;
  typename Device::context* ctx_;
  device_span<T> params_, grads_;
  buffer m_, v_;
  std::vector<view> views_;
  long step_ = 0;
};

template <class Model>
adam(Model&, adam_options = {}) -> adam<typename Model::value_type, typename Model::device>;

SOUNDNET_ABI_END
}  // namespace soundnet
