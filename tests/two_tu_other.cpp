// The library in a second translation unit, compiled for another instruction set than
// two_tu_main.cpp (tests/CMakeLists.txt: AVX2 + FMA here, plain x86-64 there).
#include <soundnet/soundnet.hpp>

#include <string>
#include <vector>

std::string isa_of_other_unit() { return soundnet::translation_unit_isa; }
std::string kernels_of_other_unit() { return soundnet::name(soundnet::active_cpu_kernels()); }
long min_length_from_other_unit() { return soundnet::soundnet8<>::min_input_length(); }

std::string names_from_other_unit() {
  soundnet::model<soundnet::soundnet5<>> net;
  std::string names;
  for (const auto& n : net.output_names()) names += n + " ";
  return names;
}

std::vector<float> features_from_other_unit(const std::vector<float>& wave) {
  soundnet::model<soundnet::soundnet5<>> net(5);
  net.forward(wave.data(), 1, static_cast<long>(wave.size()));
  const auto y = net.output("conv5_objects");
  return std::vector<float>(y.data(), y.data() + y.size());
}
