// model<Net, T, Device>: a network type (architectures.hpp) with parameters and buffers on a
// device, run forward (inference or training), KL loss, backward and named read-outs.
//
// Shapes: waveforms (N, 1, samples); activations (N, C, T); the two heads' logits and the
// teachers' targets (N, classes, output steps).
#pragma once

#ifndef SOUNDNET_INSIDE_SOUNDNET
#error "include <soundnet/soundnet.hpp> instead of soundnet/model.hpp"
#endif

#include "core/abi.hpp"
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>
#include <xtensor/xtensor.hpp>

#include "backend/device.hpp"
#include "core/audio.hpp"
#include "core/error.hpp"
#include "core/random.hpp"
#include "core/runtime_layers.hpp"
#include "core/sequential.hpp"

namespace soundnet {
SOUNDNET_ABI_BEGIN

template <class Net, class T = float, class Device = cpu>
class model {
  static_assert(is_network_v<Net>,
                "SOUNDNET_MODEL_NEEDS_A_NAMED_NETWORK_TYPE_(a sequential<...> with a static name)");
  static_assert(std::is_floating_point_v<T>, "SOUNDNET_MODEL_SCALAR_MUST_BE_FLOAT_OR_DOUBLE");
  static_assert(device_compiled_in<Device>::value,
                "SOUNDNET_CUDA_DEVICE_IS_NOT_COMPILED_IN_(link_the_CMake_target_soundnet::cuda,_built_when_nvcc_is_found_or_with_SOUNDNET_WITH_CUDA=ON)");
  static_assert(std::conjunction_v<device_compiled_in<Device>, check_device<Device, T>>, "SOUNDNET_DEVICE_IS_INCOMPLETE");

  template <class Seq>
  struct layer_tuple;
  template <class... L>
  struct layer_tuple<sequential<L...>> {
    using type = std::tuple<detail::runtime_layer<L, T, Device>...>;
  };
  template <class... L>
  static sequential<L...> base_of(const sequential<L...>*);
  using base_sequential = decltype(base_of(static_cast<const Net*>(nullptr)));

 public:
  using network = Net;
  using value_type = T;
  using device = Device;
  using tensor = xt::xtensor<T, 3>;
  using buffer = typename Device::template buffer<T>;
  using context_type = typename Device::context;
  using O = ops<Device, T>;
  static constexpr std::size_t num_layers = Net::size;
  static constexpr int objects = Net::objects;
  static constexpr int scenes = Net::scenes;
  static constexpr int heads = scenes > 0 ? 2 : 1;  // one per teacher

  /// A model with the paper's initialisation drawn from `seed`.
  explicit model(std::uint64_t seed = 1) {
    setup_layers(std::make_index_sequence<num_layers>{});
    initialize(seed);
  }

  model(const model&) = delete;  // parameter views point into the layers
  model& operator=(const model&) = delete;

  static constexpr const char* architecture() { return Net::name; }
  static constexpr long min_input_length() { return Net::min_input_length(); }
  static constexpr long output_length(long samples) { return Net::output_length(samples); }

  /// Conv weights N(0, 0.01), biases 0, BN gamma N(1, 0.02), beta 0, running stats (0, 1),
  /// drawn on the host and copied to the device, so every device starts from the same values.
  void initialize(std::uint64_t seed) {
    normal_generator rng(seed);
    if constexpr (std::is_same_v<Device, cpu>) {  // host memory already: drawn in place, no staging copy
      O::fill(ctx_, param_arena_.data(), static_cast<long>(param_arena_.size()), T(0));
      O::fill(ctx_, stat_arena_.data(), static_cast<long>(stat_arena_.size()), T(0));
      std::apply([&](auto&... l) { (l.initialize(param_arena_.data(), stat_arena_.data(), rng), ...); }, layers_);
    } else {
      std::vector<T> params(param_arena_.size(), T(0)), stats(stat_arena_.size(), T(0));
      std::apply([&](auto&... l) { (l.initialize(params.data(), stats.data(), rng), ...); }, layers_);
      O::copy_from_host(ctx_, params.data(), static_cast<long>(params.size()), param_arena_.data());
      O::copy_from_host(ctx_, stats.data(), static_cast<long>(stats.size()), stat_arena_.data());
    }
    if (has_gradients_) zero_grad();
  }

  /// Every named tensor in state-dict order: parameters and batch-norm running statistics.
  /// Views into the arenas: the pointers stay valid for the model's lifetime.
  const std::vector<parameter<T>>& parameters() const { return params_; }
  std::vector<parameter<T>>& parameters() { return params_; }

  /// The trainable parameters, all in one contiguous device buffer (the views of
  /// parameters() point into it at their offsets; the gaps between tensors hold zeros).
  device_span<T> parameter_arena() { return {param_arena_.data(), param_arena_.size()}; }
  /// The gradients of the parameter arena, in the same layout: one span, what an all-reduce
  /// takes. Creates them (zeroed) if they do not exist yet.
  device_span<T> gradients() {
    require_gradients();
    return {grad_arena_.data(), grad_arena_.size()};
  }
  /// The batch-norm running statistics, one contiguous device buffer.
  device_span<T> statistics() { return {stat_arena_.data(), stat_arena_.size()}; }

  /// The name of the first trainable tensor whose gradient holds a NaN or an infinity (after
  /// backward()), or "" when every gradient is finite. Training checks it before a step, so
  /// that a poisoned gradient never reaches the weights (nor a checkpoint).
  std::string non_finite_gradient() {
    if (!has_gradients_) return "";
    // one pass over the arena on the device; the tensors one by one only to name the culprit
    if (O::all_finite(ctx_, grad_arena_.data(), static_cast<long>(grad_arena_.size()))) return "";
    for (const auto& p : params_)
      if (p.trainable() && p.grad && !O::all_finite(ctx_, p.grad, static_cast<long>(p.size))) return p.name;
    return "";
  }
  /// The batch-norm running statistics copied to the host, and back: a training step that is
  /// abandoned (a non-finite loss or gradient skipped) restores the statistics its forward moved.
  std::vector<T> statistics_to_host() {
    std::vector<T> host(stat_arena_.size());
    if (!host.empty()) O::copy_to_host(ctx_, stat_arena_.data(), static_cast<long>(host.size()), host.data());
    return host;
  }
  void statistics_from_host(const std::vector<T>& host) {
    if (host.size() != stat_arena_.size()) throw error("statistics_from_host: " + std::to_string(host.size()) +
                                                       " values for " + std::to_string(stat_arena_.size()) + " statistics");
    if (!host.empty()) O::copy_from_host(ctx_, host.data(), static_cast<long>(host.size()), stat_arena_.data());
  }

  /// The device context the model's operations run on (scratch memory; streams on a GPU).
  context_type& context() { return ctx_; }

  /// Data-parallel training: training-mode batch norm over the global batch, its sums taken
  /// through `sync` (see batch_norm_sync; every process of the run must set it). nullptr: each
  /// process's own batch (the default).
  void synchronise_batch_norm(batch_norm_sync* sync) { ctx_.set_batch_norm_sync(sync); }

  /// Copies the values of `p` (a view of this model) to host memory (p.size values).
  void copy_to_host(const parameter<T>& p, T* host_dst) const { O::copy_to_host(ctx_, p.value, static_cast<long>(p.size), host_dst); }
  /// Sets the values of `p` (a view of this model) from host memory (p.size values).
  void copy_from_host(const parameter<T>& p, const T* host_src) {
    O::copy_from_host(ctx_, host_src, static_cast<long>(p.size), p.value);
  }

  /// The parameter named `name`; throws soundnet::error if there is none.
  parameter<T>& parameter_named(const std::string& name) {
    for (auto& p : params_)
      if (p.name == name) return p;
    throw error(std::string(Net::name) + " has no tensor named '" + name + "'");
  }

  /// Names of the read-out points, in network order (conv1_linear, bn1, conv1, pool1, ...).
  const std::vector<std::string>& output_names() const { return tap_names_; }
  bool has_output(const std::string& name) const { return find_tap(name) >= 0; }

  /// True for the read-outs inside a conv + batch norm + ReLU block (conv{i}_linear, bn{i}),
  /// which a fused inference forward (keep::block_outputs) does not keep.
  bool inside_fused_block(const std::string& name) const {
    const long tap = find_tap(name);
    return tap >= 0 && skipped_when_fused(taps_[tap].act);
  }

  // ---- forward ------------------------------------------------------------------------

  /// Runs the network on waveforms (N, 1, samples). Throws shape_error for a wrong shape,
  /// an input shorter than min_input_length(), or a non-finite sample. In inference mode
  /// `k` chooses the read-outs kept (keep::block_outputs fuses conv, batch norm and ReLU).
  void forward(const tensor& waveforms, mode m = mode::inference, keep k = keep::block_outputs) {
    if (waveforms.dimension() != 3 || waveforms.shape(1) != 1)
      throw shape_error("waveforms must have shape (batch, 1, samples); got " + shape_string(waveforms));
    forward(waveforms.data(), static_cast<long>(waveforms.shape(0)), static_cast<long>(waveforms.shape(2)), m, k);
  }

  /// As above on a host buffer (N, 1, samples).
  void forward(const T* waveforms, long batch, long samples, mode m = mode::inference,
               keep k = keep::block_outputs) {
    run_forward(waveforms, batch, samples, m, k, num_layers);
  }

  /// As above on waveforms already in the device's memory (on the CPU, host memory), e.g. what
  /// cuda::upload_stage::upload() returns: the same computation without the copy from the host.
  /// Non-finite samples are looked for on the device and named as forward() names them.
  void forward_device(const T* waveforms, long batch, long samples, mode m = mode::inference,
                      keep k = keep::block_outputs) {
    if constexpr (std::is_same_v<Device, cpu>) {
      run_forward(waveforms, batch, samples, m, k, num_layers);
    } else {
      check_shape(batch, samples);
      prepare_forward(batch, samples, m, k, num_layers);
      const long n = batch * samples;
      O::copy(ctx_, waveforms, n, acts_[0].data());
      if (!O::all_finite(ctx_, acts_[0].data(), n)) {  // rare: bring it back to name the sample
        has_forward_ = has_logit_grad_ = false;        // the activations are sized for this batch
        std::vector<T> host(static_cast<std::size_t>(n));
        O::copy_to_host(ctx_, acts_[0].data(), n, host.data());
        check_input(host.data(), batch, samples);
        throw shape_error("input has a non-finite value (NaN or Inf)");
      }
      finish_forward(m);
    }
  }

  /// As above on 16-bit PCM samples (N, 1, samples) in host memory: each is scaled to the
  /// network's input convention (sample / 32768 * audio_format::scale). On a GPU the 16-bit
  /// samples are uploaded (half the bytes of float32) and converted on the device. Int16
  /// samples are always finite: nothing is checked but the length.
  void forward_pcm16(const std::int16_t* samples, long batch, long length, mode m = mode::inference,
                     keep k = keep::block_outputs) {
    check_shape(batch, length);
    const T scale = static_cast<T>(audio_format::scale) / T(32768);
    const std::size_t n = static_cast<std::size_t>(batch * length);
    prepare_forward(batch, length, m, k, num_layers);
    if constexpr (std::is_same_v<Device, cpu>) {
      T* x = acts_[0].data();
      for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<T>(samples[i]) * scale;
    } else {
      pcm16_.resize(n);
      O::upload_int16(ctx_, samples, static_cast<long>(n), pcm16_.data());
      O::convert_int16(ctx_, pcm16_.data(), static_cast<long>(n), scale, acts_[0].data());
    }
    finish_forward(m);
  }

  /// Inference on a host buffer (N, 1, samples) that stops at the read-out `name`: the layers
  /// after it are not run, and their read-outs are unavailable until the next full forward.
  /// `k` as in forward(); keep::all is used anyway when `name` lies inside a block
  /// (conv{i}_linear, bn{i}). Same input checks as forward().
  void forward_to(const T* waveforms, long batch, long samples, const std::string& name,
                  keep k = keep::block_outputs) {
    const long tap = find_tap(name);
    if (tap < 0) throw error(unknown_output_message(name));
    const std::size_t depth = taps_[tap].act;
    run_forward(waveforms, batch, samples, mode::inference, skipped_when_fused(depth) ? keep::all : k, depth);
  }

  /// The read-out `name` of the last forward, (N, C, T).
  tensor output(const std::string& name) const { return output(name, 0, -1); }

  /// Steps [first, first + steps) of the read-out `name` of the last forward, (N, C, steps);
  /// steps < 0: to the end. Throws soundnet::error for a range outside the read-out.
  tensor output(const std::string& name, long first, long steps) const {
    require_forward("output");
    const long tap = find_tap(name);
    if (tap < 0) throw error(unknown_output_message(name));
    const auto& where = taps_[tap];
    if (where.act > depth_)
      throw error("'" + name + "' was not computed: the last forward stopped at layer " + std::to_string(depth_) +
                  " of " + std::to_string(num_layers) + " (forward_to)");
    if (!kept_[where.act])
      throw error("'" + name + "' is not kept by an inference forward that fuses conv, batch norm and ReLU; "
                  "use forward(x, mode::inference, keep::all)");
    const long t = lengths_[where.act];
    if (steps < 0) steps = t - first;
    if (first < 0 || steps < 0 || first + steps > t)
      throw error("steps [" + std::to_string(first) + ", " + std::to_string(first + steps) + ") of '" + name +
                  "' requested; it has " + std::to_string(t));
    const long c_total = Net::channels[where.act];
    tensor out = xt::empty<T>({static_cast<std::size_t>(batch_), static_cast<std::size_t>(where.c_count),
                               static_cast<std::size_t>(steps)});
    for (long n = 0; n < batch_; ++n) {
      const T* src = acts_[where.act].data() + (n * c_total + where.c_begin) * t + first;
      T* dst = out.data() + n * where.c_count * steps;
      if (steps == t)
        O::copy_to_host(ctx_, src, where.c_count * t, dst);
      else
        for (long c = 0; c < where.c_count; ++c)
          O::copy_to_host(ctx_, src + c * t, steps, dst + c * steps);
    }
    return out;
  }

  /// Forward in inference mode, then the read-out `name` (fused unless `name` lies inside a
  /// block: conv{i}_linear, bn{i}).
  tensor features(const tensor& waveforms, const std::string& name) {
    const long tap = find_tap(name);
    if (tap < 0) throw error(unknown_output_message(name));
    forward(waveforms, mode::inference, skipped_when_fused(taps_[tap].act) ? keep::all : keep::block_outputs);
    return output(name);
  }

  /// Layers run before the read-out `name` (its index into lengths(): its time steps are
  /// Net::lengths(samples)[output_depth(name)]). Throws soundnet::error for an unknown name.
  std::size_t output_depth(const std::string& name) const {
    const long tap = find_tap(name);
    if (tap < 0) throw error(unknown_output_message(name));
    return taps_[tap].act;
  }

  /// Channels of the read-out `name`. Throws soundnet::error for an unknown name.
  long output_channels(const std::string& name) const {
    const long tap = find_tap(name);
    if (tap < 0) throw error(unknown_output_message(name));
    return taps_[tap].c_count;
  }

  /// The (first) head's logits; scene_logits(): the second head's (two-head networks only).
  tensor object_logits() const { return output(tap_names_[tap_names_.size() - heads]); }
  tensor scene_logits() const {
    if constexpr (heads == 1) throw error(std::string(Net::name) + " with one head has no scene logits");
    else return output(tap_names_.back());
  }

  // ---- loss and backward --------------------------------------------------------------

  /// Loss = sum over the two heads of the mean over batch and time of
  /// KL(target || softmax(logits)); the targets are (N, classes, output steps) distributions.
  /// Also stores d loss / d logits for backward().
  double kl_loss(const tensor& target_objects, const tensor& target_scenes) {
    if constexpr (heads == 1) throw error(std::string(Net::name) + " has one head: kl_loss takes one target");
    require_full_forward("kl_loss");
    const long t = lengths_[num_layers];
    check_target(target_objects, objects, t, "object");
    check_target(target_scenes, scenes, t, "scene");
    logit_grad_.resize(acts_[num_layers].size());
    target_objects_.resize(target_objects.size());
    target_scenes_.resize(target_scenes.size());
    O::copy_from_host(ctx_, target_objects.data(), static_cast<long>(target_objects.size()), target_objects_.data());
    O::copy_from_host(ctx_, target_scenes.data(), static_cast<long>(target_scenes.size()), target_scenes_.data());
    const double divisor = static_cast<double>(batch_) * t;
    const double loss =
        O::softmax_kl(ctx_, acts_[num_layers].data(), batch_, objects + scenes, 0, objects, t, target_objects_.data(),
                      divisor, logit_grad_.data()) +
        O::softmax_kl(ctx_, acts_[num_layers].data(), batch_, objects + scenes, objects, scenes, t,
                      target_scenes_.data(), divisor, logit_grad_.data());
    has_logit_grad_ = true;
    return loss;
  }

  /// The one-head form (Scenes = 0): KL(target || softmax(logits)), mean over batch and time.
  double kl_loss(const tensor& targets) {
    if constexpr (heads == 2) throw error(std::string(Net::name) + " has two heads: kl_loss takes two targets");
    require_full_forward("kl_loss");
    const long t = lengths_[num_layers];
    check_target(targets, objects, t, "object");
    logit_grad_.resize(acts_[num_layers].size());
    target_objects_.resize(targets.size());
    O::copy_from_host(ctx_, targets.data(), static_cast<long>(targets.size()), target_objects_.data());
    const double loss = O::softmax_kl(ctx_, acts_[num_layers].data(), batch_, objects, 0, objects, t,
                                      target_objects_.data(), static_cast<double>(batch_) * t, logit_grad_.data());
    has_logit_grad_ = true;
    return loss;
  }

  /// The supervised loss (the paper's Table 5 "scratch init" baseline): cross-entropy of the
  /// softmax over the first head's first `classes` logits against one class per waveform
  /// (`labels`, each in [0, classes)), at every output step, mean over batch and steps. It is the
  /// KL divergence against one-hot targets, computed by the same kernel as kl_loss(); the head's
  /// other logits (and a second head) take no part and get a zero gradient, so the 1000-way
  /// object head serves any `classes` up to `objects`. Stores d loss / d logits for backward().
  double cross_entropy_loss(const std::vector<int>& labels, int classes) {
    require_full_forward("cross_entropy_loss");
    if (classes < 2 || classes > objects)
      throw error("cross_entropy_loss: classes must be 2.." + std::to_string(objects) + " (the head's logits), got " +
                  std::to_string(classes));
    if (static_cast<long>(labels.size()) != batch_)
      throw shape_error("cross_entropy_loss: " + std::to_string(labels.size()) + " labels for a batch of " +
                        std::to_string(batch_));
    const long t = lengths_[num_layers];
    tensor onehot = xt::zeros<T>({static_cast<std::size_t>(batch_), static_cast<std::size_t>(classes),
                                  static_cast<std::size_t>(t)});
    for (long i = 0; i < batch_; ++i) {
      const int y = labels[static_cast<std::size_t>(i)];
      if (y < 0 || y >= classes)
        throw error("cross_entropy_loss: label " + std::to_string(y) + " of waveform " + std::to_string(i) +
                    " is outside 0.." + std::to_string(classes - 1));
      for (long j = 0; j < t; ++j) onehot(static_cast<std::size_t>(i), static_cast<std::size_t>(y), static_cast<std::size_t>(j)) = T(1);
    }
    logit_grad_.resize(acts_[num_layers].size());
    O::fill(ctx_, logit_grad_.data(), static_cast<long>(logit_grad_.size()), T(0));
    target_objects_.resize(onehot.size());
    O::copy_from_host(ctx_, onehot.data(), static_cast<long>(onehot.size()), target_objects_.data());
    const double loss = O::softmax_kl(ctx_, acts_[num_layers].data(), batch_, objects + scenes, 0, classes, t,
                                      target_objects_.data(), static_cast<double>(batch_) * t, logit_grad_.data());
    has_logit_grad_ = true;
    return loss;
  }

  /// Creates the gradient buffers if they do not exist yet (inference never needs them).
  void require_gradients() {
    if (has_gradients_) return;
    grad_arena_.resize(param_arena_.size());
    O::fill(ctx_, grad_arena_.data(), static_cast<long>(grad_arena_.size()), T(0));
    for (auto& p : params_)
      if (p.trainable()) p.grad = grad_arena_.data() + p.offset;  // views stay in place
    has_gradients_ = true;
  }

  /// Sets every parameter gradient to 0 (one fill over the gradient arena).
  void zero_grad() {
    require_gradients();
    O::fill(ctx_, grad_arena_.data(), static_cast<long>(grad_arena_.size()), T(0));
  }

  /// Back-propagates the gradient stored by kl_loss(); gradients accumulate into the
  /// parameters' grads (call zero_grad() first for a fresh step).
  void backward() {
    if (!has_logit_grad_) throw error("backward() needs kl_loss() or cross_entropy_loss() after the last forward()");
    backward_from(logit_grad_.data());
  }

  /// Back-propagates a given gradient of the logits (N, objects + scenes, output steps).
  void backward(const tensor& logit_grad) {
    require_full_forward("backward");
    const long t = lengths_[num_layers];
    if (logit_grad.dimension() != 3 || static_cast<long>(logit_grad.shape(0)) != batch_ ||
        static_cast<long>(logit_grad.shape(1)) != objects + scenes || static_cast<long>(logit_grad.shape(2)) != t)
      throw shape_error("logit gradient must have shape (" + std::to_string(batch_) + ", " +
                        std::to_string(objects + scenes) + ", " + std::to_string(t) + "); got " +
                        shape_string(logit_grad));
    logit_grad_.resize(logit_grad.size());
    O::copy_from_host(ctx_, logit_grad.data(), static_cast<long>(logit_grad.size()), logit_grad_.data());
    backward_from(logit_grad_.data());
  }

  /// Called by backward() each time one more layer's gradients are queued: `begin` and `count`
  /// delimit that layer's values in the gradient arena (gradients()), final once the work queued
  /// so far on the device has run (on the CPU, at once). Layers finish from the last to the
  /// first, so the calls cover the arena from its end down to offset 0, each value once, in
  /// order, one call per layer (count 0 for a layer without parameters); the last call has
  /// begin 0. A data-parallel run starts each range's all-reduce there, overlapping it with the
  /// rest of the backward pass. An empty function (the default) turns the calls off.
  using gradient_callback = std::function<void(std::size_t begin, std::size_t count)>;
  void on_gradients_ready(gradient_callback f) { gradients_ready_ = std::move(f); }

  /// With timing on, forward() and backward() record the seconds each layer took.
  void set_layer_timing(bool on) { timing_ = on; }
  const std::array<double, num_layers>& layer_seconds() const { return layer_seconds_; }
  const std::array<double, num_layers>& layer_backward_seconds() const { return layer_backward_seconds_; }

  long batch() const { return batch_; }
  mode last_mode() const { return mode_; }

 private:
  struct tap_location {
    std::size_t act;  // index into acts_ (output of layer act - 1)
    long c_begin, c_count;
  };

  template <std::size_t... I>
  void setup_layers(std::index_sequence<I...>) {
    detail::arena_layout layout;
    ((param_begin_[I] = layout.parameters(), std::get<I>(layers_).declare(Net::channels[I], Net::block[I], layout)),
     ...);
    param_begin_[num_layers] = layout.parameters();
    param_arena_.resize(layout.parameters());
    stat_arena_.resize(layout.statistics());
    for (const auto& v : layout.views()) {
      T* base = v.trainable ? param_arena_.data() : stat_arena_.data();
      params_.push_back({v.name, v.shape, base + v.offset, nullptr, v.size, v.trainable, v.offset});
    }
    (add_taps<I>(), ...);
  }

  detail::arenas<T> arena_pointers() {
    return {param_arena_.data(), has_gradients_ ? grad_arena_.data() : nullptr, stat_arena_.data()};
  }

  template <std::size_t I>
  void add_taps() {
    std::vector<std::string> names;
    std::get<I>(layers_).taps(names);
    if (names.size() == 1) {
      taps_.push_back({I + 1, 0, Net::channels[I + 1]});
    } else {  // the two heads
      taps_.push_back({I + 1, 0, objects});
      taps_.push_back({I + 1, objects, scenes});
    }
    tap_names_.insert(tap_names_.end(), names.begin(), names.end());
  }

  void run_forward(const T* waveforms, long batch, long samples, mode m, keep k, std::size_t depth) {
    check_input(waveforms, batch, samples);
    prepare_forward(batch, samples, m, k, depth);
    O::copy_from_host(ctx_, waveforms, batch * samples, acts_[0].data());
    finish_forward(m);
  }

  // Sizes the activations of a forward of `batch` inputs of `samples`; acts_[0] is then filled
  // by the caller.
  void prepare_forward(long batch, long samples, mode m, keep k, std::size_t depth) {
    const auto lengths = Net::lengths(samples);
    fused_ = m == mode::inference && k == keep::block_outputs;
    batch_ = batch;
    depth_ = depth;
    for (std::size_t i = 0; i <= num_layers; ++i) {
      lengths_[i] = lengths[i];
      kept_[i] = i <= depth && !(fused_ && skipped_when_fused(i));
      // The old contents are not needed: buffers free before they grow, so that the old and
      // the new storage never coexist (peak memory of chunked streaming).
      if (kept_[i]) acts_[i].resize(static_cast<std::size_t>(batch * Net::channels[i] * lengths[i]));
    }
  }

  void finish_forward(mode m) {
    forward_layers(m, std::make_index_sequence<num_layers>{});
    mode_ = m;
    has_forward_ = true;
    has_logit_grad_ = false;
  }

  template <std::size_t... I>
  void forward_layers(mode m, std::index_sequence<I...>) {
    (forward_layer<I>(m), ...);
  }

  // Layer I is a convolution followed by batch norm and ReLU: fusable in inference.
  static constexpr bool fusable(std::size_t i) {
    return i + 2 < num_layers && Net::kinds[i] == layer_kind::conv1d && Net::kinds[i + 1] == layer_kind::batch_norm &&
           Net::kinds[i + 2] == layer_kind::relu;
  }
  // acts_[a] (the output of layer a - 1) is not computed by the fused path.
  static constexpr bool skipped_when_fused(std::size_t a) {
    return a >= 1 && (fusable(a - 1) || (a >= 2 && fusable(a - 2)));
  }

  // Layer j is the batch norm or the ReLU of a fusable block.
  static constexpr bool fused_away(std::size_t j) { return (j >= 1 && fusable(j - 1)) || (j >= 2 && fusable(j - 2)); }

  template <std::size_t I>
  void forward_layer(mode m) {
    if (I >= depth_) {  // forward_to stopped before this layer
      if (timing_) layer_seconds_[I] = 0;
      return;
    }
    if (fused_ && fused_away(I)) {  // done by the fused convolution
      if (timing_) layer_seconds_[I] = 0;
      return;
    }
    const auto start = timing_ ? timing_clock() : std::chrono::steady_clock::time_point{};
    if constexpr (fusable(I)) {
      if (fused_) {
        auto& conv = std::get<I>(layers_);
        auto& bn = std::get<I + 1>(layers_);
        const T* p = param_arena_.data();
        const T* st = stat_arena_.data();
        O::conv1d_bn_relu_forward(ctx_, acts_[I].data(), p + conv.w, p + conv.b, p + bn.gamma, p + bn.beta,
                                  st + bn.running_mean, st + bn.running_var, bn.eps, acts_[I + 3].data(),
                                  conv.geometry(batch_, lengths_[I], lengths_[I + 1]));
      }
    }
    if (!(fusable(I) && fused_))
      std::get<I>(layers_).forward(ctx_, arena_pointers(), acts_[I].data(), batch_, lengths_[I], acts_[I + 1].data(),
                                   lengths_[I + 1], m);
    if (timing_) layer_seconds_[I] = std::chrono::duration<double>(timing_clock() - start).count();
  }

  void backward_from(const T* logit_grad) {
    require_gradients();
    if (fused_)
      throw error("backward() needs every activation: run forward(x, mode::training) or "
                  "forward(x, mode::inference, keep::all) first");
    std::size_t largest = 0;
    for (std::size_t i = 1; i < num_layers; ++i) largest = std::max(largest, acts_[i].size());
    for (auto& g : grads_)
      if (g.size() < largest) g.resize(largest);
    backward_layer<num_layers - 1>(logit_grad, 0);
  }

  // Layer I: dy is the gradient of its output; its input gradient goes to grads_[slot].
  template <std::size_t I>
  void backward_layer(const T* dy, int slot) {
    T* dx = I == 0 ? nullptr : grads_[slot].data();
    const auto start = timing_ ? timing_clock() : std::chrono::steady_clock::time_point{};
    std::get<I>(layers_).backward(ctx_, arena_pointers(), acts_[I].data(), acts_[I + 1].data(), dy, batch_,
                                  lengths_[I], lengths_[I + 1], dx);
    if (timing_)
      layer_backward_seconds_[I] = std::chrono::duration<double>(timing_clock() - start).count();
    if (gradients_ready_) gradients_ready_(param_begin_[I], param_begin_[I + 1] - param_begin_[I]);
    if constexpr (I > 0) backward_layer<I - 1>(dx, 1 - slot);
  }

  // The time now, once the device has finished the queued work (a GPU runs ops asynchronously:
  // per-layer timing waits for each layer).
  std::chrono::steady_clock::time_point timing_clock() const {
    if constexpr (detail::context_synchronizes<context_type>::value) ctx_.synchronize();
    return std::chrono::steady_clock::now();
  }

  void check_shape(long batch, long samples) const {
    if (batch < 1) throw shape_error("the batch is empty");
    if (samples < min_input_length())
      throw shape_error("input of " + std::to_string(samples) + " samples is too short for " + Net::name +
                        ": it needs at least " + std::to_string(min_input_length()) + " samples (" +
                        seconds(min_input_length()) + " s at " + std::to_string(audio_format::sample_rate) + " Hz)");
  }

  void check_input(const T* x, long batch, long samples) const {
    check_shape(batch, samples);
    long bad = -1;  // the input is host memory: checked before it is copied to the device
    for (long i = 0; i < batch * samples && bad < 0; ++i)
      if (!std::isfinite(x[i])) bad = i;
    if (bad >= 0)
      throw shape_error("input has a non-finite value (NaN or Inf) in clip " + std::to_string(bad / samples) +
                        " at sample " + std::to_string(bad % samples));
  }

  void check_target(const tensor& target, long classes, long t, const char* head) const {
    if (static_cast<long>(target.shape(0)) != batch_ || static_cast<long>(target.shape(1)) != classes ||
        static_cast<long>(target.shape(2)) != t)
      throw shape_error(std::string(head) + " targets must have shape (" + std::to_string(batch_) + ", " +
                        std::to_string(classes) + ", " + std::to_string(t) + "); got " + shape_string(target));
    for (std::size_t i = 0; i < target.size(); ++i)
      if (!(target.data()[i] >= T(0)) || !std::isfinite(target.data()[i]))
        throw shape_error(std::string(head) + " targets must be finite and non-negative (element " +
                          std::to_string(i) + ")");
  }

  void require_forward(const char* what) const {
    if (!has_forward_) throw error(std::string(what) + "() needs a forward() first");
  }

  void require_full_forward(const char* what) const {
    require_forward(what);
    if (depth_ != num_layers)
      throw error(std::string(what) + "() needs a forward() through the whole network, not forward_to()");
  }

  long find_tap(const std::string& name) const {
    for (std::size_t i = 0; i < tap_names_.size(); ++i)
      if (tap_names_[i] == name) return static_cast<long>(i);
    return -1;
  }

  std::string unknown_output_message(const std::string& name) const {
    std::string msg = std::string(Net::name) + " has no output named '" + name + "'; known:";
    for (const auto& n : tap_names_) msg += " " + n;
    return msg;
  }

  static std::string shape_string(const tensor& x) {
    std::string s = "(";
    for (std::size_t i = 0; i < x.dimension(); ++i) s += (i ? ", " : "") + std::to_string(x.shape(i));
    return s + ")";
  }

  static std::string seconds(long samples) {
    const long tenths = (samples * 10 + audio_format::sample_rate / 2) / audio_format::sample_rate;
    return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10);
  }

  typename layer_tuple<base_sequential>::type layers_;
  std::vector<parameter<T>> params_;
  std::vector<std::string> tap_names_;
  std::vector<tap_location> taps_;
  std::array<buffer, num_layers + 1> acts_;  // acts_[0]: input; acts_[i + 1]: output of layer i
  std::array<long, num_layers + 1> lengths_{};
  std::array<buffer, 2> grads_;              // ping-pong input gradients in backward
  buffer logit_grad_, target_objects_, target_scenes_;
  typename Device::template buffer<std::int16_t> pcm16_;  // forward_pcm16's upload (not on the CPU)
  buffer param_arena_, grad_arena_, stat_arena_;
  mutable context_type ctx_;  // scratch memory: read-outs use it too
  long batch_ = 0;
  std::size_t depth_ = num_layers;  // layers run by the last forward
  mode mode_ = mode::inference;
  bool has_forward_ = false, has_logit_grad_ = false, timing_ = false, fused_ = false, has_gradients_ = false;
  std::array<bool, num_layers + 1> kept_{};
  std::array<double, num_layers> layer_seconds_{}, layer_backward_seconds_{};
  std::array<std::size_t, num_layers + 1> param_begin_{};  // each layer's first value in the parameter arena
  gradient_callback gradients_ready_;
};

SOUNDNET_ABI_END
}  // namespace soundnet
