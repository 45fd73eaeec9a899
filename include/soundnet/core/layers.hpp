// Compile-time layer specifications.
//
// A layer spec is an empty type that carries the layer's hyper-parameters as constants and
// knows, as constexpr functions, how it maps channels and lengths. Specs hold no data and
// no device code: the model (model.hpp) turns each spec into a runtime layer with
// parameters and buffers, and the backend (backend/) runs the arithmetic.
//
// Contract of a layer spec L (checked by is_layer_spec_v):
//   L::kind                                  layer_kind
//   L::out_channels(int in) -> int           constexpr, channels after the layer
//   L::out_length(long in)  -> long          constexpr, time steps after the layer, < 1 if
//                                            the input is too short
#pragma once

#include <type_traits>

namespace soundnet {

enum class layer_kind { conv1d, batch_norm, relu, max_pool1d, two_head_conv1d };

/// 1-D convolution with bias: y[o, t] = b[o] + sum_{c,k} w[o, c, k] x[c, t*Stride + k - Padding].
/// Requires Out > 0, Kernel > 0, Stride > 0, Padding >= 0.
template <int Out, int Kernel, int Stride, int Padding>
struct conv1d {
  static_assert(Out > 0, "SOUNDNET_CONV1D_OUT_CHANNELS_MUST_BE_POSITIVE");
  static_assert(Kernel > 0, "SOUNDNET_CONV1D_KERNEL_MUST_BE_POSITIVE");
  static_assert(Stride > 0, "SOUNDNET_CONV1D_STRIDE_MUST_BE_POSITIVE");
  static_assert(Padding >= 0, "SOUNDNET_CONV1D_PADDING_MUST_NOT_BE_NEGATIVE");

  static constexpr layer_kind kind = layer_kind::conv1d;
  static constexpr int out = Out, kernel = Kernel, stride = Stride, padding = Padding;

  static constexpr int out_channels(int) { return Out; }
  static constexpr long out_length(long in) {
    const long span = in + 2L * Padding - Kernel;
    return span < 0 ? 0 : span / Stride + 1;
  }
};

/// Batch normalisation over (batch, time) per channel, eps 1e-5, momentum 0.1 (PyTorch's).
struct batch_norm {
  static constexpr layer_kind kind = layer_kind::batch_norm;
  static constexpr int out_channels(int in) { return in; }
  static constexpr long out_length(long in) { return in; }
};

/// Rectified linear unit.
struct relu {
  static constexpr layer_kind kind = layer_kind::relu;
  static constexpr int out_channels(int in) { return in; }
  static constexpr long out_length(long in) { return in; }
};

/// Max-pooling in floor mode (a partial window at the end is dropped).
/// Requires Kernel > 0, Stride > 0.
template <int Kernel, int Stride = Kernel>
struct max_pool1d {
  static_assert(Kernel > 0, "SOUNDNET_MAX_POOL1D_KERNEL_MUST_BE_POSITIVE");
  static_assert(Stride > 0, "SOUNDNET_MAX_POOL1D_STRIDE_MUST_BE_POSITIVE");

  static constexpr layer_kind kind = layer_kind::max_pool1d;
  static constexpr int kernel = Kernel, stride = Stride;
  static constexpr int out_channels(int in) { return in; }
  static constexpr long out_length(long in) { return in < Kernel ? 0 : (in - Kernel) / Stride + 1; }
};

/// The output layer, one head per teacher: two convolutions with the same geometry on the same
/// input, one producing Objects logits, the other Scenes logits (the objects channels first,
/// then the scenes channels; weights <name>_objects and <name>_scenes, as the authors' network).
/// Scenes = 0 gives one head of Objects classes (one teacher; weights <name>.weight and .bias).
template <int Objects, int Scenes, int Kernel, int Stride, int Padding>
struct two_head_conv1d {
  static_assert(Objects > 0, "SOUNDNET_OBJECT_HEAD_NEEDS_AT_LEAST_ONE_CLASS");
  static_assert(Scenes >= 0, "SOUNDNET_SCENE_HEAD_CLASSES_MUST_NOT_BE_NEGATIVE");
  static_assert(Kernel > 0, "SOUNDNET_CONV1D_KERNEL_MUST_BE_POSITIVE");
  static_assert(Stride > 0, "SOUNDNET_CONV1D_STRIDE_MUST_BE_POSITIVE");
  static_assert(Padding >= 0, "SOUNDNET_CONV1D_PADDING_MUST_NOT_BE_NEGATIVE");

  static constexpr layer_kind kind = layer_kind::two_head_conv1d;
  static constexpr int objects = Objects, scenes = Scenes;
  static constexpr int heads = Scenes > 0 ? 2 : 1;
  static constexpr int out = Objects + Scenes, kernel = Kernel, stride = Stride, padding = Padding;

  static constexpr int out_channels(int) { return Objects + Scenes; }
  static constexpr long out_length(long in) {
    return conv1d<Objects + Scenes, Kernel, Stride, Padding>::out_length(in);
  }
};

namespace detail {
template <class L, class = void>
struct is_layer_spec : std::false_type {};
template <class L>
struct is_layer_spec<L, std::void_t<decltype(L::kind), decltype(L::out_channels(1)),
                                    decltype(L::out_length(1L))>>
    : std::bool_constant<std::is_same_v<std::remove_cv_t<decltype(L::kind)>, layer_kind>> {};
}  // namespace detail

/// True when L fulfils the layer-spec contract above.
template <class L>
inline constexpr bool is_layer_spec_v = detail::is_layer_spec<L>::value;

}  // namespace soundnet
