// A network is a flat list of layer specs: sequential<conv1d<...>, batch_norm, relu, ...>.
//
// Requires: every entry is a layer spec (layers.hpp); the first layer is a convolution; the
// list ends with exactly one two_head_conv1d; each convolution block holds at most one
// batch_norm, one relu and one max_pool1d. Violations fail to compile with a
// SOUNDNET_... message.
// Ensures: channels, lengths and the minimum input length are constexpr.
#pragma once

#include <array>
#include <cstddef>
#include <tuple>

#include "layers.hpp"

namespace soundnet {

template <class... Layers>
struct sequential {
  static_assert(sizeof...(Layers) > 0, "SOUNDNET_NETWORK_NEEDS_AT_LEAST_ONE_LAYER");
  static_assert((is_layer_spec_v<Layers> && ...), "SOUNDNET_NETWORK_ENTRY_IS_NOT_A_LAYER_SPEC");

  static constexpr std::size_t size = sizeof...(Layers);
  using layer_list = std::tuple<Layers...>;
  template <std::size_t I>
  using layer = std::tuple_element_t<I, layer_list>;

  static constexpr std::array<layer_kind, size> kinds = {Layers::kind...};

 private:
  template <class L>
  static constexpr long stride_of() {
    if constexpr (L::kind == layer_kind::conv1d || L::kind == layer_kind::two_head_conv1d ||
                  L::kind == layer_kind::max_pool1d)
      return L::stride;
    else
      return 1;
  }

  template <class L>
  static constexpr long kernel_of() {
    if constexpr (L::kind == layer_kind::conv1d || L::kind == layer_kind::two_head_conv1d ||
                  L::kind == layer_kind::max_pool1d)
      return L::kernel;
    else
      return 1;
  }

  template <class L>
  static constexpr long padding_of() {
    if constexpr (L::kind == layer_kind::conv1d || L::kind == layer_kind::two_head_conv1d)
      return L::padding;
    else
      return 0;
  }

  template <class L>
  static constexpr double conv_flops(int c_in, long t_out) {
    if constexpr (L::kind == layer_kind::conv1d || L::kind == layer_kind::two_head_conv1d)
      return 2.0 * L::out * c_in * L::kernel * static_cast<double>(t_out);
    else
      return 0.0;
  }

  static constexpr bool starts_with_convolution() {
    return kinds[0] == layer_kind::conv1d || kinds[0] == layer_kind::two_head_conv1d;
  }
  static constexpr std::size_t count(layer_kind k) {
    std::size_t n = 0;
    for (auto x : kinds) n += (x == k);
    return n;
  }
  static constexpr bool one_of_each_per_block() {
    int bn = 0, re = 0, pool = 0;
    for (auto k : kinds) {
      if (k == layer_kind::conv1d || k == layer_kind::two_head_conv1d) {
        bn = re = pool = 0;
      } else if ((k == layer_kind::batch_norm && ++bn > 1) || (k == layer_kind::relu && ++re > 1) ||
                 (k == layer_kind::max_pool1d && ++pool > 1)) {
        return false;
      }
    }
    return true;
  }

 public:
  static_assert(starts_with_convolution(), "SOUNDNET_NETWORK_MUST_START_WITH_A_CONVOLUTION");
  static_assert(kinds[size - 1] == layer_kind::two_head_conv1d,
                "SOUNDNET_NETWORK_MUST_END_WITH_A_TWO_HEADED_OUTPUT_LAYER");
  static_assert(count(layer_kind::two_head_conv1d) == 1,
                "SOUNDNET_TWO_HEADED_OUTPUT_MUST_BE_THE_LAST_LAYER_ONLY");
  static_assert(one_of_each_per_block(),
                "SOUNDNET_AT_MOST_ONE_BATCH_NORM_RELU_AND_POOL_PER_CONVOLUTION_BLOCK");

  using head = layer<size - 1>;
  static constexpr int objects = head::objects;
  static constexpr int scenes = head::scenes;
  static constexpr int in_channels = 1;

  /// channels[i]: channels entering layer i; channels[size]: the output channels.
  static constexpr std::array<int, size + 1> channels = [] {
    std::array<int, size + 1> c{};
    c[0] = in_channels;
    std::size_t i = 0;
    ((c[i + 1] = Layers::out_channels(c[i]), ++i), ...);
    return c;
  }();

  /// block[i]: 1-based index of the convolution block layer i belongs to (conv1 = 1).
  static constexpr std::array<int, size> block = [] {
    std::array<int, size> b{};
    int current = 0;
    for (std::size_t i = 0; i < size; ++i) {
      if (kinds[i] == layer_kind::conv1d || kinds[i] == layer_kind::two_head_conv1d) ++current;
      b[i] = current;
    }
    return b;
  }();

  /// Time geometry of each layer: output step t of layer i reads input steps
  /// [t * strides[i] - paddings[i], t * strides[i] - paddings[i] + kernels[i]), where steps
  /// outside the input are zeros. Batch norm and ReLU: kernel 1, stride 1, padding 0.
  static constexpr std::array<long, size> kernels = {kernel_of<Layers>()...};
  static constexpr std::array<long, size> strides = {stride_of<Layers>()...};
  static constexpr std::array<long, size> paddings = {padding_of<Layers>()...};

  /// lengths(n)[i]: time steps entering layer i for an input of n samples; [size]: output.
  /// A value below 1 means the input is too short.
  static constexpr std::array<long, size + 1> lengths(long samples) {
    std::array<long, size + 1> r{};
    r[0] = samples;
    std::size_t i = 0;
    ((r[i + 1] = r[i] > 0 ? Layers::out_length(r[i]) : 0, ++i), ...);
    return r;
  }

  /// Input samples between consecutive output steps: the product of all strides.
  static constexpr long output_stride() {
    long stride = 1;
    ((stride *= stride_of<Layers>()), ...);
    return stride;
  }

  /// Output time steps (of each head) for an input of `samples` samples; 0 if too short.
  static constexpr long output_length(long samples) { return lengths(samples)[size]; }

  /// The smallest number of samples that gives one output step.
  static constexpr long min_input_length() {
    long lo = 1, hi = 1;
    while (output_length(hi) < 1) hi *= 2;
    while (lo < hi) {  // output_length is non-decreasing in the input length
      const long mid = lo + (hi - lo) / 2;
      if (output_length(mid) >= 1) hi = mid; else lo = mid + 1;
    }
    return lo;
  }

  /// Floating-point operations of each layer in one forward pass of one clip: a convolution's
  /// multiply-adds count 2; batch norm, ReLU and pooling (under 1% together) count 0.
  static constexpr std::array<double, size> layer_flops(long samples) {
    const auto len = lengths(samples);
    std::array<double, size> flops{};
    std::size_t i = 0;
    ((flops[i] = conv_flops<Layers>(channels[i], len[i + 1]), ++i), ...);
    return flops;
  }

  /// Floating-point operations of one forward pass of one clip (the sum of layer_flops).
  static constexpr double forward_flops(long samples) {
    double total = 0;
    for (double f : layer_flops(samples)) total += f;
    return total;
  }

  /// Compile-time shape for a fixed input length.
  template <long Samples>
  struct shape_for {
    static_assert(Samples >= min_input_length(), "SOUNDNET_INPUT_TOO_SHORT_FOR_THIS_NETWORK");
    static constexpr std::array<long, size + 1> lengths = sequential::lengths(Samples);
    static constexpr long output_length = lengths[size];
  };
};

namespace detail {
template <class Net, class = void>
struct is_network : std::false_type {};
template <class Net>
struct is_network<Net, std::void_t<typename Net::layer_list, decltype(Net::channels),
                                   decltype(Net::name)>> : std::true_type {};
}  // namespace detail

/// True for a named network type: a sequential<...> with a static `name`.
template <class Net>
inline constexpr bool is_network_v = detail::is_network<Net>::value;

}  // namespace soundnet
