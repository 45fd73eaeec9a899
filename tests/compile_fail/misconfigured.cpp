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
#else
struct broken : sequential<conv1d<16, 64, 2, 32>, batch_norm, relu, max_pool1d<8>, two_head_conv1d<10, 5, 8, 2, 0>> {
  static constexpr const char* name = "fine";
};
static_assert(soundnet8<>::shape_for<441000>::output_length == 4, "control");
#endif

int main() {
  model<broken> net;
  return static_cast<int>(net.output_names().size() == 0);
}
