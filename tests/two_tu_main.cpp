// The library in two translation units of one program (with two_tu_other.cpp), compiled for
// different instruction sets where the compiler can (tests/CMakeLists.txt): a non-inline
// definition in a header would fail to link, and code compiled for AVX2 must never be what the
// plain unit runs (the arithmetic lives in namespaces named after the instruction set,
// core/abi.hpp; the hot kernels choose theirs at run time, backend/cpu/kernels.hpp).
#define BOOST_TEST_MODULE two_translation_units
#include <boost/test/unit_test.hpp>

#include <soundnet/soundnet.hpp>

#include <cmath>
#include <string>
#include <vector>

std::string isa_of_other_unit();
std::string kernels_of_other_unit();
long min_length_from_other_unit();
std::string names_from_other_unit();
std::vector<float> features_from_other_unit(const std::vector<float>& wave);

BOOST_AUTO_TEST_CASE(both_units_agree) {
  BOOST_TEST(min_length_from_other_unit() == soundnet::soundnet8<>::min_input_length());
  soundnet::model<soundnet::soundnet5<>> net;
  std::string names;
  for (const auto& n : net.output_names()) names += n + " ";
  BOOST_TEST(names == names_from_other_unit());
}

BOOST_AUTO_TEST_CASE(units_built_for_other_instruction_sets_keep_their_own_code) {
  BOOST_TEST_MESSAGE("this unit: " << soundnet::translation_unit_isa << ", the other: " << isa_of_other_unit());
#ifdef SOUNDNET_TEST_DIFFERENT_ISA
  BOOST_TEST(std::string(soundnet::translation_unit_isa) == "isa_base");
  BOOST_TEST(isa_of_other_unit() == "isa_avx2_fma");
#endif
  // Both choose the kernels at run time, from the processor: the same ones.
  BOOST_TEST(kernels_of_other_unit() == soundnet::name(soundnet::active_cpu_kernels()));
  std::vector<float> wave(70000);
  for (std::size_t i = 0; i < wave.size(); ++i) wave[i] = static_cast<float>(80 * std::sin(0.01 * i) + 20 * std::sin(0.37 * i));
  soundnet::model<soundnet::soundnet5<>> net(5);
  net.forward(wave.data(), 1, static_cast<long>(wave.size()));
  const auto here = net.output("conv5_objects");
  const auto there = features_from_other_unit(wave);
  BOOST_REQUIRE_EQUAL(here.size(), there.size());
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < there.size(); ++i) {
    diff += (here.data()[i] - there[i]) * double(here.data()[i] - there[i]);
    norm += double(there[i]) * there[i];
  }
  // The glue between the kernels may round differently (FMA contraction under -mfma).
  BOOST_TEST(std::sqrt(diff / norm) < 1e-5);
}
