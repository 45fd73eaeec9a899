// Model weights and training checkpoints as safetensors.
//
// Weights: every tensor of model::parameters() under its state-dict name (conv1.weight
// (C_out, C_in, K), bn1.running_var, conv8_objects.bias, ...), float32, with metadata
// {"architecture": "soundnet8" | "soundnet5"}.
// Checkpoint: the weights plus the Adam moments ("adam.m.<name>", "adam.v.<name>") and the
// metadata "adam_step", "adam_lr", "adam_beta1", "adam_beta2", "adam_eps" and any extra
// entries of the caller (e.g. the state of a data sampler).
#pragma once

#ifndef SOUNDNET_INSIDE_SOUNDNET
#error "include <soundnet/soundnet.hpp> instead of soundnet/io/weights.hpp"
#endif

#include "../core/abi.hpp"
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../adam.hpp"
#include "safetensors.hpp"

namespace soundnet {
SOUNDNET_ABI_BEGIN
namespace io {

namespace detail {

inline std::string shape_text(const std::vector<std::size_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// `size` values at device pointer `src` as host float32.
template <class Device, class T>
std::vector<float> to_float(typename Device::context& ctx, const T* src, std::size_t size) {
  if constexpr (std::is_same_v<Device, cpu>) {
    return std::vector<float>(src, src + size);
  } else {
    std::vector<T> host(size);
    ops<Device, T>::copy_to_host(ctx, src, static_cast<long>(size), host.data());
    return std::vector<float>(host.begin(), host.end());
  }
}

inline std::string exact(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

inline bool ignorable(const std::string& name) {  // PyTorch's BN counter: not used here
  const std::string suffix = ".num_batches_tracked";
  return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Checks tensor `name` of `file` (dtype, shape, finiteness) and, with a non-null `dst`,
// copies it there; without one it only checks, so that a model is changed only after every
// tensor has passed.
template <class T>
void load_tensor(const safetensors_file& file, const std::string& name, const std::vector<std::size_t>& shape,
                 T* dst) {
  const auto& e = file.tensors.at(name);
  if (e.dtype != "F32")
    throw weights_error(file.path, "tensor '" + name + "' has dtype " + e.dtype + "; soundnet weights are F32");
  if (e.shape != shape)
    throw weights_error(file.path, "tensor '" + name + "' has shape " + shape_text(e.shape) + " but the model expects " +
                                       shape_text(shape));
  const long bad = file.copy_to(name, dst);
  if (bad >= 0) throw weights_error(file.path, "tensor '" + name + "' has a non-finite value at element " + std::to_string(bad));
}

// Copies the checked tensor `name` of `file` to device pointer `dst` (host memory on the CPU,
// written in place; other devices through a host copy).
template <class Device, class T>
void load_tensor_to(typename Device::context& ctx, const safetensors_file& file, const std::string& name,
                    const std::vector<std::size_t>& shape, T* dst, std::size_t size) {
  if constexpr (std::is_same_v<Device, cpu>) {
    load_tensor(file, name, shape, dst);
  } else {
    std::vector<T> host(size);
    load_tensor(file, name, shape, host.data());
    ops<Device, T>::copy_from_host(ctx, host.data(), static_cast<long>(size), dst);
  }
}

template <class Model>
void check_architecture(const safetensors_file& file) {
  const auto it = file.metadata.find("architecture");
  if (it != file.metadata.end() && it->second != Model::architecture())
    throw weights_error(file.path, "weights are for " + it->second + " but the model is " + Model::architecture());
}

}  // namespace detail

/// The model's tensors as float32 named tensors (state-dict order).
template <class Model>
std::vector<named_tensor> weight_tensors(const Model& net) {
  std::vector<named_tensor> out;
  using device = typename Model::device;
  auto& ctx = const_cast<Model&>(net).context();  // transfers only: the model is not changed
  for (const auto& p : net.parameters()) out.push_back({p.name, p.shape, detail::to_float<device>(ctx, p.value, p.size)});
  return out;
}

/// Saves the model's weights.
template <class Model>
void save_weights(const Model& net, const std::string& path) {
  write_safetensors(path, weight_tensors(net), {{"architecture", Model::architecture()}});
}

namespace detail {
template <class Model>
void load_weights_from(Model& net, const safetensors_file& file) {
  const std::string& path = file.path;
  detail::check_architecture<Model>(file);
  std::set<std::string> expected;
  std::string missing;
  for (const auto& p : net.parameters()) {
    expected.insert(p.name);
    if (!file.tensors.count(p.name)) missing += (missing.empty() ? "" : ", ") + p.name;
  }
  if (!missing.empty()) throw weights_error(path, "missing tensors for " + std::string(Model::architecture()) + ": " + missing);
  std::string unknown;
  for (const auto& [name, entry] : file.tensors)
    if (!expected.count(name) && !detail::ignorable(name) && name.rfind("adam.", 0) != 0)
      unknown += (unknown.empty() ? "" : ", ") + name;
  if (!unknown.empty())
    throw weights_error(path, "tensors that " + std::string(Model::architecture()) + " does not have: " + unknown);
  // Check everything before changing the model (no staging copy: the checks cannot fail twice).
  for (const auto& p : net.parameters())
    detail::load_tensor(file, p.name, p.shape, static_cast<typename Model::value_type*>(nullptr));
  for (auto& p : net.parameters())
    detail::load_tensor_to<typename Model::device>(net.context(), file, p.name, p.shape, p.value, p.size);
}

}  // namespace detail

/// Loads weights saved by save_weights (or a checkpoint, or a PyTorch state dict saved as
/// safetensors). Every model tensor must be present with its shape and dtype F32; a tensor
/// the model does not have is an error (BN's num_batches_tracked and a checkpoint's Adam
/// state are skipped). Throws weights_error naming the file and the tensor. On error the
/// model is unchanged.
template <class Model>
void load_weights(Model& net, const std::string& path) {
  detail::load_weights_from(net, read_safetensors(path));
}

/// Saves weights, Adam state and `extra` metadata, so that training resumes bit for bit.
template <class Model, class Optimizer>
void save_checkpoint(const Model& net, Optimizer& opt, const std::string& path,
                     std::map<std::string, std::string> extra = {}) {
  auto tensors = weight_tensors(net);
  for (const auto& s : opt.state()) {
    tensors.push_back({"adam.m." + s.name, s.shape, detail::to_float<typename Model::device>(opt.context(), s.m, s.size)});
    tensors.push_back({"adam.v." + s.name, s.shape, detail::to_float<typename Model::device>(opt.context(), s.v, s.size)});
  }
  static_assert(std::is_same_v<typename Model::value_type, float>,
                "SOUNDNET_CHECKPOINTS_STORE_FLOAT32_MODELS_ONLY_(a double model would not resume bit for bit)");
  extra["architecture"] = Model::architecture();
  extra["format"] = "soundnet-checkpoint-1";
  extra["adam_step"] = std::to_string(opt.steps());
  extra["adam_lr"] = detail::exact(opt.options().lr);
  extra["adam_beta1"] = detail::exact(opt.options().beta1);
  extra["adam_beta2"] = detail::exact(opt.options().beta2);
  extra["adam_eps"] = detail::exact(opt.options().eps);
  write_safetensors(path, tensors, extra);
}

/// Restores a checkpoint written by save_checkpoint into the model and the optimiser
/// (weights, moments, step, hyper-parameters); returns the file's metadata.
template <class Model, class Optimizer>
std::map<std::string, std::string> load_checkpoint(Model& net, Optimizer& opt, const std::string& path) {
  const safetensors_file file = read_safetensors(path);
  const auto format = file.metadata.find("format");
  if (format == file.metadata.end() || format->second != "soundnet-checkpoint-1")
    throw weights_error(path, "not a soundnet checkpoint (metadata 'format' is not soundnet-checkpoint-1)");
  auto number = [&](const char* key) {
    const auto it = file.metadata.find(key);
    if (it == file.metadata.end()) throw weights_error(path, std::string("checkpoint metadata lacks '") + key + "'");
    try {
      std::size_t used = 0;
      const double v = std::stod(it->second, &used);
      if (used != it->second.size()) throw std::invalid_argument(key);
      return v;
    } catch (const std::exception&) {
      throw weights_error(path, std::string("checkpoint metadata '") + key + "' is not a number: " + it->second);
    }
  };
  adam_options o;
  o.lr = number("adam_lr");
  o.beta1 = number("adam_beta1");
  o.beta2 = number("adam_beta2");
  o.eps = number("adam_eps");
  const long steps = static_cast<long>(number("adam_step"));
  auto state = opt.state();
  for (const auto& s : state)
    for (const char* kind : {"adam.m.", "adam.v."})
      if (!file.tensors.count(kind + s.name)) throw weights_error(path, std::string("checkpoint lacks ") + kind + s.name);
  for (const auto& s : state)  // checked before anything changes
    for (const char* kind : {"adam.m.", "adam.v."})
      detail::load_tensor(file, kind + s.name, s.shape, static_cast<decltype(s.m)>(nullptr));
  detail::load_weights_from(net, file);
  for (auto& s : state) {
    detail::load_tensor_to<typename Model::device>(opt.context(), file, "adam.m." + s.name, s.shape, s.m, s.size);
    detail::load_tensor_to<typename Model::device>(opt.context(), file, "adam.v." + s.name, s.shape, s.v, s.size);
  }
  opt.set_options(o);
  opt.set_steps(steps);
  return file.metadata;
}

}  // namespace io
SOUNDNET_ABI_END
}  // namespace soundnet
