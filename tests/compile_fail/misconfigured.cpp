// Each SOUNDNET_FAIL_* case must fail to compile with the message named in CMakeLists.txt;
// with no case defined the file must compile (the control).
#include <soundnet/soundnet.hpp>

using namespace soundnet;

#if defined(SOUNDNET_FAIL_ZERO_CHANNELS)
struct broken : sequential<conv1d<0, 64, 2, 32>, batch_norm, relu, two_head_conv1d<10, 5, 8, 2, 0>> {
  static constexpr const char* name = "broken";
};
#elif defined(SOUNDNET_FAIL_NO_HEAD)
struct broken : sequential<conv1d<16, 64, 2, 32>, batch_norm, relu, max_pool1d<8>> {
  static constexpr const char* name = "broken";
};
#elif defined(SOUNDNET_FAIL_HEAD_IN_THE_MIDDLE)
struct broken : sequential<conv1d<16, 64, 2, 32>, two_head_conv1d<10, 5, 8, 2, 0>, relu,
                           two_head_conv1d<10, 5, 8, 2, 0>> {
  static constexpr const char* name = "broken";
};
#elif defined(SOUNDNET_FAIL_TWO_BATCH_NORMS)
struct broken : sequential<conv1d<16, 64, 2, 32>, batch_norm, batch_norm, relu, two_head_conv1d<10, 5, 8, 2, 0>> {
  static constexpr const char* name = "broken";
};
#elif defined(SOUNDNET_FAIL_NOT_A_LAYER)
struct broken : sequential<conv1d<16, 64, 2, 32>, int, two_head_conv1d<10, 5, 8, 2, 0>> {
  static constexpr const char* name = "broken";
};
#elif defined(SOUNDNET_FAIL_INPUT_TOO_SHORT)
using broken = soundnet8<>;
constexpr long steps = soundnet8<>::shape_for<44100>::output_length;  // 2 s: too short
#elif defined(SOUNDNET_FAIL_NEGATIVE_PADDING)
struct broken : sequential<conv1d<16, 64, 2, -1>, two_head_conv1d<10, 5, 8, 2, 0>> {
  static constexpr const char* name = "broken";
};
#elif defined(SOUNDNET_FAIL_INCOMPLETE_DEVICE)
// A device with a context and a buffer whose op table lacks adam_update.
struct half_done {
  struct context {};
  template <class T>
  using buffer = soundnet::cpu::buffer<T>;
};
namespace soundnet {
template <>
struct ops<half_done, float> : private ops<cpu, float> {  // every op but adam_update
  using base = ops<cpu, float>;
  using base::fill, base::copy, base::copy_to_host, base::copy_from_host, base::conv1d_forward,
      base::conv1d_bn_relu_forward, base::conv1d_backward, base::batch_norm_forward_train,
      base::batch_norm_forward_eval, base::batch_norm_invstd, base::batch_norm_backward, base::relu_forward,
      base::relu_backward, base::max_pool_forward, base::max_pool_backward, base::softmax_kl;
};
}  // namespace soundnet
struct broken : soundnet5<> {};
#define SOUNDNET_TEST_DEVICE half_done
#elif defined(SOUNDNET_FAIL_NO_BACKEND)
struct nowhere {};
struct broken : soundnet5<> {};
#define SOUNDNET_TEST_DEVICE nowhere
#elif defined(SOUNDNET_FAIL_CUDA_NOT_COMPILED_IN)  // built without linking soundnet::cuda
struct broken : soundnet5<> {};
#define SOUNDNET_TEST_DEVICE cuda
#else
struct broken : sequential<conv1d<16, 64, 2, 32>, batch_norm, relu, max_pool1d<8>, two_head_conv1d<10, 5, 8, 2, 0>> {
  static constexpr const char* name = "fine";
};
static_assert(soundnet8<>::shape_for<441000>::output_length == 4, "control");
#endif

#ifndef SOUNDNET_TEST_DEVICE
#define SOUNDNET_TEST_DEVICE cpu
#endif

int main() {
  model<broken, float, SOUNDNET_TEST_DEVICE> net;
  return static_cast<int>(net.output_names().size() == 0);
}
