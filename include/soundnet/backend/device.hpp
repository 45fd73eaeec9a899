// What every device shares: the geometry types, the ops<Device, T> primary template and the
// compile-time checks that a device is complete. Nothing here includes a device's API (no
// Eigen, no OpenMP, no CUDA): each device lives in its own folder (backend/cpu/, ...).
//
// Contract of a device type D (checked by check_device<D, T>):
//   D::name                       a string literal ("cpu", ...)
//   D::context                    what every op receives first: streams, library handles,
//                                 scratch memory; default-constructible, owned by a model
//   D::buffer<U>                  device memory for U: default-constructible, movable, with
//                                   size() -> std::size_t     elements held
//                                   data() -> U*              device pointer (null when empty)
//                                   resize(n)                 size() becomes n; the contents
//                                                             are unspecified afterwards
//                                 nothing else: fills, copies and transfers are ops
//   ops<D, T>                     the operation table below, as static functions
//
// The operation table (every op takes D::context& first; pointers are device pointers unless
// named host_*; shapes at the end of the lines):
//   fill, copy, copy_to_host, copy_from_host                      memory
//   conv1d_forward, conv1d_bn_relu_forward, conv1d_backward        convolution
//   batch_norm_forward_train, batch_norm_forward_eval,
//   batch_norm_invstd, batch_norm_backward                         batch normalisation
//   relu_forward, relu_backward, max_pool_forward, max_pool_backward
//   softmax_kl                                                     the loss
//   adam_update                                                    the optimiser, one call per arena
//   all_finite                                                     no NaN or infinity (gradients)
// and, on a device other than the CPU, for model::forward_pcm16:
//   upload_int16, convert_int16                                    16-bit samples, scaled on the device
#pragma once

#include "../core/abi.hpp"
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace soundnet {
SOUNDNET_ABI_BEGIN

/// Geometry of one 1-D convolution call: x (n, c_in, t_in) -> y (n, c_out, t_out) with
/// y[o, t] = b[o] + sum_{c,k} w[o, c, k] x[c, t*stride + k - padding].
struct conv_geometry {
  long n, c_in, t_in, c_out, kernel, stride, padding, t_out;
};

/// A contiguous range of device memory: what an all-reduce or an optimiser takes.
template <class T>
struct device_span {
  T* ptr = nullptr;
  std::size_t count = 0;
  T* data() const { return ptr; }
  std::size_t size() const { return count; }
};

/// Sums values across the processes of a data-parallel run, in place: every process passes its
/// own values and receives the totals (an all-reduce over a communicator: MPI, NCCL, ...). A
/// device context that is given one (context::set_batch_norm_sync) trains batch norm on the
/// global batch: the batch statistics and their gradients are summed over the processes, so N
/// processes with batch B/N compute what one process with batch B computes. Host memory,
/// double precision (a few values per channel); every process must call it in the same order.
struct batch_norm_sync {
  virtual ~batch_norm_sync() = default;
  virtual void sum(double* host_values, long count) = 0;
};

/// Operation table of a device. Only specialisations exist; asking for a device without one
/// fails to compile.
template <class Device, class T>
struct ops {
  static_assert(sizeof(Device) == 0, "SOUNDNET_NO_BACKEND_FOR_THIS_DEVICE_TYPE");
};

namespace detail {

#define SOUNDNET_DETAIL_HAS_OP(op)                                                          \
  template <class O, class = void>                                                          \
  struct has_op_##op : std::false_type {};                                                  \
  template <class O>                                                                        \
  struct has_op_##op<O, std::void_t<decltype(&O::op)>> : std::true_type {};
SOUNDNET_DETAIL_HAS_OP(fill)
SOUNDNET_DETAIL_HAS_OP(copy)
SOUNDNET_DETAIL_HAS_OP(copy_to_host)
SOUNDNET_DETAIL_HAS_OP(copy_from_host)
SOUNDNET_DETAIL_HAS_OP(conv1d_forward)
SOUNDNET_DETAIL_HAS_OP(conv1d_bn_relu_forward)
SOUNDNET_DETAIL_HAS_OP(conv1d_backward)
SOUNDNET_DETAIL_HAS_OP(batch_norm_forward_train)
SOUNDNET_DETAIL_HAS_OP(batch_norm_forward_eval)
SOUNDNET_DETAIL_HAS_OP(batch_norm_invstd)
SOUNDNET_DETAIL_HAS_OP(batch_norm_backward)
SOUNDNET_DETAIL_HAS_OP(relu_forward)
SOUNDNET_DETAIL_HAS_OP(relu_backward)
SOUNDNET_DETAIL_HAS_OP(max_pool_forward)
SOUNDNET_DETAIL_HAS_OP(max_pool_backward)
SOUNDNET_DETAIL_HAS_OP(softmax_kl)
SOUNDNET_DETAIL_HAS_OP(adam_update)
SOUNDNET_DETAIL_HAS_OP(all_finite)
#undef SOUNDNET_DETAIL_HAS_OP

template <class B, class U, class = void>
struct is_device_buffer : std::false_type {};
template <class B, class U>
struct is_device_buffer<B, U,
                        std::void_t<decltype(std::declval<B&>().size()), decltype(std::declval<B&>().data()),
                                    decltype(std::declval<B&>().resize(std::size_t(1)))>>
    : std::bool_constant<std::is_same_v<decltype(std::declval<B&>().data()), U*> &&
                         std::is_default_constructible_v<B> && std::is_move_constructible_v<B>> {};

template <class C, class = void>
struct context_synchronizes : std::false_type {};  // an asynchronous device's context: synchronize()
template <class C>
struct context_synchronizes<C, std::void_t<decltype(std::declval<const C&>().synchronize())>> : std::true_type {};

template <class D, class = void>
struct has_context : std::false_type {};
template <class D>
struct has_context<D, std::void_t<typename D::context>>
    : std::bool_constant<std::is_default_constructible_v<typename D::context>> {};

template <class D, class T, class = void>
struct has_buffer : std::false_type {};
template <class D, class T>
struct has_buffer<D, T, std::void_t<typename D::template buffer<T>, typename D::template buffer<std::int32_t>>>
    : std::bool_constant<is_device_buffer<typename D::template buffer<T>, T>::value &&
                         is_device_buffer<typename D::template buffer<std::int32_t>, std::int32_t>::value> {};

}  // namespace detail

/// False for a device that this build declares but does not have (soundnet::cuda without the
/// target soundnet::cuda): model<Net, T, Device> then fails to compile with a message saying so.
template <class D, class = void>
struct device_compiled_in : std::true_type {};
template <class D>
struct device_compiled_in<D, std::void_t<decltype(D::compiled_in)>> : std::bool_constant<D::compiled_in> {};

/// Compile-time check that Device is complete for scalar T: a context, a buffer type that keeps
/// the buffer contract, and every operation of the table. Each gap fails with its own message.
template <class Device, class T>
struct check_device {
  static_assert(detail::has_context<Device>::value,
                "SOUNDNET_DEVICE_NEEDS_A_DEFAULT_CONSTRUCTIBLE_CONTEXT_TYPE_(Device::context)");
  static_assert(detail::has_buffer<Device, T>::value,
                "SOUNDNET_DEVICE_BUFFER_MUST_OFFER_SIZE_DATA_AND_RESIZE_(Device::buffer<T>)");
  using O = ops<Device, T>;
  static_assert(detail::has_op_fill<O>::value, "SOUNDNET_DEVICE_OPS_LACK_fill");
  static_assert(detail::has_op_copy<O>::value, "SOUNDNET_DEVICE_OPS_LACK_copy");
  static_assert(detail::has_op_copy_to_host<O>::value, "SOUNDNET_DEVICE_OPS_LACK_copy_to_host");
  static_assert(detail::has_op_copy_from_host<O>::value, "SOUNDNET_DEVICE_OPS_LACK_copy_from_host");
  static_assert(detail::has_op_conv1d_forward<O>::value, "SOUNDNET_DEVICE_OPS_LACK_conv1d_forward");
  static_assert(detail::has_op_conv1d_bn_relu_forward<O>::value, "SOUNDNET_DEVICE_OPS_LACK_conv1d_bn_relu_forward");
  static_assert(detail::has_op_conv1d_backward<O>::value, "SOUNDNET_DEVICE_OPS_LACK_conv1d_backward");
  static_assert(detail::has_op_batch_norm_forward_train<O>::value, "SOUNDNET_DEVICE_OPS_LACK_batch_norm_forward_train");
  static_assert(detail::has_op_batch_norm_forward_eval<O>::value, "SOUNDNET_DEVICE_OPS_LACK_batch_norm_forward_eval");
  static_assert(detail::has_op_batch_norm_invstd<O>::value, "SOUNDNET_DEVICE_OPS_LACK_batch_norm_invstd");
  static_assert(detail::has_op_batch_norm_backward<O>::value, "SOUNDNET_DEVICE_OPS_LACK_batch_norm_backward");
  static_assert(detail::has_op_relu_forward<O>::value, "SOUNDNET_DEVICE_OPS_LACK_relu_forward");
  static_assert(detail::has_op_relu_backward<O>::value, "SOUNDNET_DEVICE_OPS_LACK_relu_backward");
  static_assert(detail::has_op_max_pool_forward<O>::value, "SOUNDNET_DEVICE_OPS_LACK_max_pool_forward");
  static_assert(detail::has_op_max_pool_backward<O>::value, "SOUNDNET_DEVICE_OPS_LACK_max_pool_backward");
  static_assert(detail::has_op_softmax_kl<O>::value, "SOUNDNET_DEVICE_OPS_LACK_softmax_kl");
  static_assert(detail::has_op_adam_update<O>::value, "SOUNDNET_DEVICE_OPS_LACK_adam_update");
  static_assert(detail::has_op_all_finite<O>::value, "SOUNDNET_DEVICE_OPS_LACK_all_finite");
  static constexpr bool value = true;
};

SOUNDNET_ABI_END
}  // namespace soundnet
