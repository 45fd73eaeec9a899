// The library in two translation units of one program (with two_tu_other.cpp): a non-inline
// function or variable defined in a header would fail to link.
#define BOOST_TEST_MODULE two_translation_units
#include <boost/test/unit_test.hpp>

#include <soundnet/soundnet.hpp>

long min_length_from_other_unit();
std::string names_from_other_unit();

BOOST_AUTO_TEST_CASE(both_units_agree) {
  BOOST_TEST(min_length_from_other_unit() == soundnet::soundnet8<>::min_input_length());
  soundnet::model<soundnet::soundnet5<>> net;
  std::string names;
  for (const auto& n : net.output_names()) names += n + " ";
  BOOST_TEST(names == names_from_other_unit());
}
