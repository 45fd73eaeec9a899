// The CUDA device against the CPU device (independent code: Eigen and OpenMP there, cuBLAS and
// our kernels here): every case of the shared op list (tests/op_cases.hpp) in float32, in TF32
// and in float64 against the CPU in float64; the whole SoundNet-8 (forward in both modes, KL
// loss, gradients of every tensor, an Adam step); bit-identical repeats; the int16 upload.
// Tolerances per precision are those of docs/numerics.md ("The CUDA device").
//
// Suites: `gpu` needs a GPU and is reported as skipped, with the reason, where there is none;
// `no_gpu` runs where there is none and checks the error a program then gets.
#define BOOST_TEST_MODULE cuda
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "op_cases.hpp"

using namespace soundnet::testing;
using soundnet::cuda;

namespace {

struct error_measure {
  double rel_l2 = 0, max_abs = 0, scale = 0;
};

error_measure compare(const std::vector<double>& got, const std::vector<double>& want) {
  BOOST_REQUIRE_EQUAL(got.size(), want.size());
  double num = 0, den = 0;
  error_measure e;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double d = got[i] - want[i];
    if (!std::isfinite(got[i])) return {INFINITY, INFINITY, 0};  // NaN never passes
    num += d * d, den += want[i] * want[i];
    e.max_abs = std::max(e.max_abs, std::abs(d));
    e.scale = std::max(e.scale, std::abs(want[i]));
  }
  e.rel_l2 = std::sqrt(num / std::max(den, 1e-300));
  return e;
}

struct gpu_present {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    if (cuda::device_count() > 0) return true;
    boost::test_tools::assertion_result r(false);
    r.message() << "no CUDA GPU here: " << cuda::unavailable_reason();
    return r;
  }
};
struct no_gpu {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    if (cuda::device_count() == 0) return true;
    boost::test_tools::assertion_result r(false);
    r.message() << "a GPU is present: the no-GPU error cannot be provoked";
    return r;
  }
};

// Relative L2 tolerances against float64 on the CPU (docs/numerics.md).
constexpr double float32_tolerance = 5e-5, float32_max = 2e-4;  // cuBLAS's summation order, not ours
constexpr double tf32_conv_tolerance = 3e-3;                     // 10-bit operand mantissas
constexpr double float64_tolerance = 1e-12;

bool is_conv(const op_case& o) { return o.kind == op_kind::conv1d || o.kind == op_kind::conv1d_bn_relu; }

// One op case on the GPU against the CPU in double: forward and every gradient.
template <class T>
void check_case(op_runner<cuda, T>& gpu, op_runner<soundnet::cpu, double>& cpu, const op_case& o, double tolerance,
                double max_tolerance) {
  const auto in = make_inputs(o, 5);
  const auto e = compare(gpu.forward(o, in), cpu.forward(o, in));
  BOOST_TEST_MESSAGE(o.name << ": forward rel L2 " << e.rel_l2 << ", max " << e.max_abs << " of " << e.scale);
  BOOST_TEST(e.rel_l2 <= tolerance, o.name << " forward rel L2 " << e.rel_l2);
  BOOST_TEST(e.max_abs <= max_tolerance * e.scale, o.name << " forward max " << e.max_abs << " of " << e.scale);
  if (in.differentiable.empty()) return;
  const auto dy = draw(forward_size(o), 13);
  const auto gg = gpu.backward(o, in, dy), gc = cpu.backward(o, in, dy);
  for (const auto& name : in.differentiable) {
    const auto eg = compare(gg.at(name), gc.at(name));
    BOOST_TEST_MESSAGE(o.name << ": d" << name << " rel L2 " << eg.rel_l2);
    BOOST_TEST(eg.rel_l2 <= tolerance, o.name << " d" << name << " rel L2 " << eg.rel_l2);
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(gpu, *boost::unit_test::precondition(gpu_present()))

BOOST_AUTO_TEST_CASE(every_op_case_in_float32_matches_the_cpu_in_float64) {
  op_runner<cuda, float> gpu;
  op_runner<soundnet::cpu, double> cpu;
  BOOST_TEST_MESSAGE("GPU: " << gpu.context().device_name());
  for (const auto& o : op_cases()) BOOST_TEST_CONTEXT(o.name) { check_case(gpu, cpu, o, float32_tolerance, float32_max); }
}

BOOST_AUTO_TEST_CASE(every_op_case_in_float64_matches_the_cpu) {
  op_runner<cuda, double> gpu;
  op_runner<soundnet::cpu, double> cpu;
  for (const auto& o : op_cases())
    if (!o.large) BOOST_TEST_CONTEXT(o.name) { check_case(gpu, cpu, o, float64_tolerance, float64_tolerance); }
}

BOOST_AUTO_TEST_CASE(tf32_convolutions_stay_within_their_tolerance) {
  op_runner<cuda, float> gpu;
  gpu.context().set_math(cuda::math::tf32);
  op_runner<soundnet::cpu, double> cpu;
  for (const auto& o : op_cases())
    if (is_conv(o)) BOOST_TEST_CONTEXT(o.name) { check_case(gpu, cpu, o, tf32_conv_tolerance, 10 * tf32_conv_tolerance); }
}

BOOST_AUTO_TEST_CASE(results_repeat_bit_for_bit) {
  op_runner<cuda, float> a, b;
  for (const auto& o : op_cases()) {
    const auto in = make_inputs(o, 7);
    BOOST_TEST_CONTEXT(o.name) {
      BOOST_TEST((a.forward(o, in) == b.forward(o, in)));
      if (!in.differentiable.empty()) {
        const auto dy = draw(forward_size(o), 17);
        BOOST_TEST((a.backward(o, in, dy) == b.backward(o, in, dy)));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(int16_samples_are_converted_on_the_device) {
  cuda::context ctx;
  using O = soundnet::ops<cuda, float>;
  std::vector<std::int16_t> host = {-32768, -1, 0, 1, 12345, 32767};
  cuda::buffer<std::int16_t> raw;
  raw.resize(host.size());
  BOOST_REQUIRE(!soundnet::cuda_backend::copy_from_host(ctx.state(), host.data(), host.size() * sizeof(std::int16_t),
                                                        raw.data()));
  cuda::buffer<float> out;
  out.resize(host.size());
  O::convert_int16(ctx, raw.data(), static_cast<long>(host.size()), 256.0f / 32768.0f, out.data());
  std::vector<float> back(host.size());
  O::copy_to_host(ctx, out.data(), static_cast<long>(back.size()), back.data());
  for (std::size_t i = 0; i < host.size(); ++i) BOOST_TEST(back[i] == host[i] * (256.0f / 32768.0f));
}

// SoundNet-8 on the GPU in float32 against the CPU in float64, from the same seed: both forward
// modes, the KL loss, the gradient of every tensor and the parameters after one Adam step.
BOOST_AUTO_TEST_CASE(soundnet8_training_step_matches_the_cpu) {
  using net = soundnet::soundnet8<>;
  soundnet::model<net, float, cuda> gpu(3);
  soundnet::model<net, double, soundnet::cpu> cpu(3);
  const long batch = 2, samples = net::min_input_length() + 65536;  // two output steps
  const long steps = net::output_length(samples);
  const auto wave = draw(std::size_t(batch * samples), 21, 0, 40);
  xt::xtensor<float, 3> wf = xt::empty<float>({std::size_t(batch), std::size_t(1), std::size_t(samples)});
  xt::xtensor<double, 3> wd = xt::empty<double>({std::size_t(batch), std::size_t(1), std::size_t(samples)});
  std::copy(wave.begin(), wave.end(), wf.begin());
  std::copy(wave.begin(), wave.end(), wd.begin());

  auto vec = [](const auto& t) { return std::vector<double>(t.begin(), t.end()); };
  gpu.forward(wf, soundnet::mode::inference);
  cpu.forward(wd, soundnet::mode::inference);
  for (const char* name : {"conv1", "pool1", "pool5", "conv7"}) {
    const auto e = compare(vec(gpu.output(name)), vec(cpu.output(name)));
    BOOST_TEST_MESSAGE("inference " << name << ": rel L2 " << e.rel_l2);
    BOOST_TEST(e.rel_l2 <= 1e-4, "inference " << name << " rel L2 " << e.rel_l2);
  }

  auto targets = [&](int classes, std::uint64_t seed) {
    auto p = draw(std::size_t(batch * classes * steps), seed);
    for (long i = 0; i < batch; ++i)
      for (long j = 0; j < steps; ++j) {
        double s = 0;
        for (long k = 0; k < classes; ++k) s += (p[(i * classes + k) * steps + j] = std::exp(p[(i * classes + k) * steps + j]));
        for (long k = 0; k < classes; ++k) p[(i * classes + k) * steps + j] /= s;
      }
    return p;
  };
  const auto po = targets(net::objects, 31), ps = targets(net::scenes, 32);
  auto as = [&](const std::vector<double>& v, int classes, auto zero) {
    xt::xtensor<decltype(zero), 3> t = xt::empty<decltype(zero)>({std::size_t(batch), std::size_t(classes), std::size_t(steps)});
    std::copy(v.begin(), v.end(), t.begin());
    return t;
  };
  gpu.forward(wf, soundnet::mode::training);
  cpu.forward(wd, soundnet::mode::training);
  gpu.zero_grad();
  cpu.zero_grad();
  const double lg = gpu.kl_loss(as(po, net::objects, 0.0f), as(ps, net::scenes, 0.0f));
  const double lc = cpu.kl_loss(as(po, net::objects, 0.0), as(ps, net::scenes, 0.0));
  BOOST_TEST_MESSAGE("KL loss: GPU " << lg << ", CPU " << lc);
  BOOST_TEST(std::abs(lg - lc) <= 1e-5 * std::abs(lc));
  gpu.backward();
  cpu.backward();
  auto grads = [](auto& m) {
    std::vector<std::vector<double>> out;
    for (auto& p : m.parameters()) {
      if (!p.trainable()) continue;
      std::vector<typename std::decay_t<decltype(m)>::value_type> h(p.size);
      soundnet::ops<typename std::decay_t<decltype(m)>::device, typename std::decay_t<decltype(m)>::value_type>::copy_to_host(
          m.context(), p.grad, static_cast<long>(p.size), h.data());
      out.emplace_back(h.begin(), h.end());
    }
    return out;
  };
  const auto gg = grads(gpu), gc = grads(cpu);
  std::size_t i = 0;
  for (auto& p : cpu.parameters()) {
    if (!p.trainable()) continue;
    const auto e = compare(gg[i], gc[i]);
    BOOST_TEST_MESSAGE("d" << p.name << ": rel L2 " << e.rel_l2);
    BOOST_TEST(e.rel_l2 <= 1e-3, "d" << p.name << " rel L2 " << e.rel_l2);
    ++i;
  }
  BOOST_TEST(i == gg.size());

  soundnet::adam<float, cuda> og(gpu);
  soundnet::adam<double, soundnet::cpu> oc(cpu);
  og.step();
  oc.step();
  for (auto& p : cpu.parameters()) {
    std::vector<float> hg(p.size);
    std::vector<double> hc(p.size);
    gpu.copy_to_host(gpu.parameter_named(p.name), hg.data());
    cpu.copy_to_host(p, hc.data());
    const auto e = compare(std::vector<double>(hg.begin(), hg.end()), hc);
    BOOST_TEST(e.rel_l2 <= 1e-4, p.name << " after Adam: rel L2 " << e.rel_l2);
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(without_gpu, *boost::unit_test::precondition(no_gpu()))

BOOST_AUTO_TEST_CASE(asking_for_the_gpu_is_a_clear_error_not_a_fallback) {
  BOOST_TEST(cuda::device_count() == 0);
  BOOST_TEST(!cuda::unavailable_reason().empty());
  BOOST_TEST_MESSAGE("reason: " << cuda::unavailable_reason());
  try {
    soundnet::model<soundnet::soundnet5<>, float, cuda> net;
    BOOST_FAIL("a CUDA model was made without a GPU");
  } catch (const soundnet::error& e) {
    const std::string what = e.what();
    BOOST_TEST_MESSAGE(what);
    BOOST_TEST(what.find("CUDA device was asked for") != std::string::npos);
    BOOST_TEST(what.find("CPU device") != std::string::npos);
  }
  BOOST_CHECK_THROW(cuda::context(), soundnet::error);
}

BOOST_AUTO_TEST_SUITE_END()
