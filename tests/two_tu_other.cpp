#include <soundnet/soundnet.hpp>

long min_length_from_other_unit() { return soundnet::soundnet8<>::min_input_length(); }

std::string names_from_other_unit() {
  soundnet::model<soundnet::soundnet5<>> net;
  std::string names;
  for (const auto& n : net.output_names()) names += n + " ";
  return names;
}
