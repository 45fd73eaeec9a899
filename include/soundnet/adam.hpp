// Adam in PyTorch's formulation: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
#pragma once

#ifndef SOUNDNET_INSIDE_SOUNDNET
#error "include <soundnet/soundnet.hpp> instead of soundnet/adam.hpp"
#endif

#include <cmath>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/runtime_layers.hpp"

namespace soundnet {

struct adam_options {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

/// Adam over the trainable parameters of a model (running statistics are skipped).
/// Requires: the model outlives the optimiser.
template <class T, class Device = cpu>
class adam {
 public:
  using buffer = typename Device::template buffer<T>;

  /// A moment buffer of the optimiser, named after its parameter.
  struct state_view {
    std::string name;
    std::vector<std::size_t> shape;
    T* m;
    T* v;
    std::size_t size;
  };

  template <class Model>
  explicit adam(Model& net, adam_options options = {}) : options_(options) {
    check(options_);
    net.require_gradients();
    for (auto& p : net.parameters()) {
      if (!p.trainable()) continue;
      params_.push_back(&p);
      m_.emplace_back(p.size, T(0));
      v_.emplace_back(p.size, T(0));
    }
  }

  /// One update from the parameters' current gradients.
  void step() {
    ++step_;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      auto& p = *params_[i];
      ops<Device, T>::adam_update(p.value, p.grad, m_[i].data(), v_[i].data(), static_cast<long>(p.size),
                                  options_.lr, options_.beta1, options_.beta2, options_.eps, step_);
    }
  }

  long steps() const { return step_; }
  void set_steps(long steps) {
    if (steps < 0) throw error("Adam step count must not be negative");
    step_ = steps;
  }
  const adam_options& options() const { return options_; }
  void set_options(const adam_options& o) { check(o), options_ = o; }

  /// Views of the first and second moments, for checkpoints.
  std::vector<state_view> state() {
    std::vector<state_view> out;
    for (std::size_t i = 0; i < params_.size(); ++i)
      out.push_back({params_[i]->name, params_[i]->shape, m_[i].data(), v_[i].data(), params_[i]->size});
    return out;
  }

 private:
  static void check(const adam_options& o) {
    if (!(o.lr > 0) || !std::isfinite(o.lr)) throw error("Adam learning rate must be positive and finite");
    if (!(o.beta1 >= 0 && o.beta1 < 1)) throw error("Adam beta1 must be in [0, 1)");
    if (!(o.beta2 >= 0 && o.beta2 < 1)) throw error("Adam beta2 must be in [0, 1)");
    if (!(o.eps > 0)) throw error("Adam eps must be positive");
  }

  adam_options options_;
  std::vector<parameter<T>*> params_;
  std::vector<buffer> m_, v_;
  long step_ = 0;
};

template <class Model>
adam(Model&, adam_options = {}) -> adam<typename Model::value_type, typename Model::device>;

}  // namespace soundnet
