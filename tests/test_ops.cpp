// Every case of the shared operation list (tests/op_cases.hpp) in float32 against the same case
// in float64: the kernels that only float32 has (the direct one-channel convolution of conv1,
// the batch norm + ReLU epilogue of the fused inference) are checked against the plain double
// path, and every op's float rounding stays within its documented tolerance
// (docs/numerics.md). A CUDA backend runs the same cases against the CPU.
#define BOOST_TEST_MODULE ops
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "op_cases.hpp"

using namespace soundnet::testing;

namespace {

// Runs where the variant asked for by SOUNDNET_CPU_KERNELS (ctest runs each) can run here;
// elsewhere the test is reported as skipped, with the reason.
struct kernels_available {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    const char* env = std::getenv("SOUNDNET_CPU_KERNELS");
    for (auto k : {soundnet::cpu_kernels::generic, soundnet::cpu_kernels::avx2_fma, soundnet::cpu_kernels::avx512})
      if (env && env == std::string(soundnet::name(k)) && !soundnet::cpu_supports(k)) {
        boost::test_tools::assertion_result r(false);
        r.message() << "this processor cannot run the " << env << " kernels";
        return r;
      }
    return true;
  }
};

// Tolerances of float32 against float64 (relative L2 error; largest error over the largest value).
constexpr double rel_l2_tolerance = 2e-5, max_tolerance = 1e-4;

}  // namespace

BOOST_AUTO_TEST_CASE(every_op_case_in_float32_matches_float64, *boost::unit_test::precondition(kernels_available())) {
  BOOST_TEST_MESSAGE("kernels: " << soundnet::name(soundnet::active_cpu_kernels()));
  op_runner<soundnet::cpu, float> f32;
  op_runner<soundnet::cpu, double> f64;
  std::size_t checked = 0, direct = 0, fused = 0;
  for (const auto& o : op_cases()) {
    const auto in = make_inputs(o, 3);
    BOOST_TEST_CONTEXT(o.name) {
      const auto e = compare(f32.forward(o, in), f64.forward(o, in));
      BOOST_TEST_MESSAGE(o.name << ": forward rel L2 " << e.rel_l2 << ", max " << e.max_abs << " of " << e.scale);
      BOOST_TEST(e.rel_l2 <= rel_l2_tolerance);
      BOOST_TEST(e.max_abs <= max_tolerance * e.scale);
      if (!in.differentiable.empty()) {
        const auto dy = draw(forward_size(o), 11);
        const auto g32 = f32.backward(o, in, dy), g64 = f64.backward(o, in, dy);
        for (const auto& name : in.differentiable) {
          const auto eg = compare(g32.at(name), g64.at(name));
          BOOST_TEST_MESSAGE(o.name << ": d" << name << " rel L2 " << eg.rel_l2);
          BOOST_TEST(eg.rel_l2 <= rel_l2_tolerance, o.name << " d" << name << " rel L2 " << eg.rel_l2);
        }
      }
    }
    ++checked;
    direct += o.kind != soundnet::testing::op_kind::max_pool && o.c == 1 && o.c_out % 16 == 0 && o.c_out > 0;
    fused += o.kind == op_kind::conv1d_bn_relu;
  }
  BOOST_TEST(checked == op_cases().size());
  BOOST_TEST(direct >= 3u);  // the direct kernel is reached (c_in 1, c_out a multiple of 16)
  BOOST_TEST(fused >= 3u);
}

BOOST_AUTO_TEST_CASE(the_direct_kernel_and_the_fused_epilogue_are_reached,
                     *boost::unit_test::precondition(kernels_available())) {
  // A wrong kernel must not hide behind a fallback: the float32 direct path gives a result
  // that differs in rounding from the float32 im2col path of the same convolution with an
  // extra zero input channel (c_in 2), yet both match double.
  op_case one = op_cases()[4];  // conv1d 1->16 k64 (direct)
  BOOST_REQUIRE(one.c == 1 && one.c_out == 16);
  auto in = make_inputs(one, 5);
  op_case two = one;
  two.c = 2;
  auto in2 = in;
  auto& x2 = in2.tensors["x"];
  auto& w2 = in2.tensors["w"];
  x2.assign(std::size_t(two.n) * 2 * two.t, 0.0);
  w2.assign(std::size_t(two.c_out) * 2 * two.kernel, 0.0);
  for (long n = 0; n < one.n; ++n)
    for (long t = 0; t < one.t; ++t) x2[(n * 2) * one.t + t] = in.tensors["x"][n * one.t + t];
  for (long o = 0; o < one.c_out; ++o)
    for (long k = 0; k < one.kernel; ++k) w2[(o * 2) * one.kernel + k] = in.tensors["w"][o * one.kernel + k];
  op_runner<soundnet::cpu, float> f32;
  op_runner<soundnet::cpu, double> f64;
  const auto direct = f32.forward(one, in), im2col = f32.forward(two, in2), reference = f64.forward(one, in);
  BOOST_TEST(compare(direct, reference).rel_l2 <= rel_l2_tolerance);
  BOOST_TEST(compare(im2col, reference).rel_l2 <= rel_l2_tolerance);
  BOOST_TEST(direct != im2col);  // two different float summations: the direct kernel ran
}
