// The CUDA device against the CPU device (independent code: Eigen and OpenMP there, cuBLAS and
// our kernels here): every case of the shared op list (tests/op_cases.hpp) in float32, in TF32
// and in float64 against the CPU in float64; the whole SoundNet-8 (forward in both modes, KL
// loss, gradients of every tensor, an Adam step); bit-identical repeats; the int16 upload; the
// staged uploads beside the computation (cuda::upload_stage, model::forward_device).
// Tolerances per precision are those of docs/numerics.md ("The CUDA device").
//
// Suites: `gpu` needs a GPU and is reported as skipped, with the reason, where there is none;
// `no_gpu` runs where there is none and checks the error a program then gets.
#define BOOST_TEST_MODULE cuda
#include "boost_test.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "op_cases.hpp"

using namespace soundnet::testing;
using soundnet::cuda;

namespace {

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
constexpr double bf16_conv_tolerance = 2.4e-2;                   // 7-bit: 8x TF32's rounding
constexpr double float64_tolerance = 1e-12;

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

// Every convolution case with the GEMMs in `math`, within `tolerance` (largest error 10x).
void check_convolutions(cuda::math math, double tolerance) {
  op_runner<cuda, float> gpu;
  gpu.context().set_math(math);
  op_runner<soundnet::cpu, double> cpu;
  for (const auto& o : op_cases())
    if (o.convolution()) BOOST_TEST_CONTEXT(o.name) { check_case(gpu, cpu, o, tolerance, 10 * tolerance); }
}

BOOST_AUTO_TEST_CASE(tf32_convolutions_stay_within_their_tolerance) {
  check_convolutions(cuda::math::tf32, tf32_conv_tolerance);
}

BOOST_AUTO_TEST_CASE(bf16_convolutions_stay_within_their_tolerance) {
  check_convolutions(cuda::math::bf16, bf16_conv_tolerance);
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

BOOST_AUTO_TEST_CASE(non_finite_values_are_found_on_the_device) {
  soundnet::model<soundnet::soundnet5<>, float, cuda> net(2);
  net.zero_grad();
  BOOST_TEST(net.non_finite_gradient() == "");
  auto& p = net.parameter_named("conv5_scenes.weight");
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  soundnet::ops<cuda, float>::copy_from_host(net.context(), &inf, 1, p.grad + p.size - 1);
  BOOST_TEST(net.non_finite_gradient() == "conv5_scenes.weight");
  auto& q = net.parameter_named("conv2.bias");
  soundnet::ops<cuda, float>::copy_from_host(net.context(), &nan, 1, q.grad + 5);
  BOOST_TEST(net.non_finite_gradient() == "conv2.bias");
  net.zero_grad();
  BOOST_TEST(net.non_finite_gradient() == "");
}

BOOST_AUTO_TEST_CASE(pcm16_forward_on_the_gpu_matches_the_cpu) {
  using net = soundnet::soundnet5<>;
  soundnet::model<net, float, cuda> gpu(2);
  soundnet::model<net, float, soundnet::cpu> cpu(2);
  const long batch = 2, n = net::min_input_length() + 5000;
  std::vector<std::int16_t> pcm(std::size_t(batch * n));
  const auto v = draw(pcm.size(), 41, 0, 5000);
  for (std::size_t i = 0; i < pcm.size(); ++i) pcm[i] = static_cast<std::int16_t>(std::clamp(v[i], -32768.0, 32767.0));
  gpu.forward_pcm16(pcm.data(), batch, n);
  cpu.forward_pcm16(pcm.data(), batch, n);
  auto vec = [](const auto& t) { return std::vector<double>(t.begin(), t.end()); };
  const auto e = compare(vec(gpu.output("pool3")), vec(cpu.output("pool3")));
  BOOST_TEST(e.rel_l2 <= 1e-4, "pool3 rel L2 " << e.rel_l2);
}

// Inputs uploaded beside the computation (cuda::upload_stage): training steps whose batches go
// through the stage, each written and uploaded while the previous step's backward pass and Adam
// step may still be running, give bit for bit the losses and weights of the same steps fed from
// host memory by forward(). Were the copy not waited for, or a device buffer rewritten while
// still to be read, a step would see another batch (four steps: both buffers, each twice).
BOOST_AUTO_TEST_CASE(staged_uploads_give_the_same_training_steps) {
  using net = soundnet::soundnet5<4, 3>;
  const long batch = 2, samples = net::min_input_length() + 3000, steps = net::output_length(samples);
  const std::size_t n = std::size_t(batch * samples);
  soundnet::model<net, float, cuda> direct(7), staged(7);
  soundnet::adam<float, cuda> od(direct), os(staged);
  cuda::upload_stage<float> stage(staged.context());
  xt::xtensor<float, 3> t_obj = xt::ones<float>({std::size_t(batch), std::size_t(4), std::size_t(steps)}) / 4.0f;
  xt::xtensor<float, 3> t_scn = xt::ones<float>({std::size_t(batch), std::size_t(3), std::size_t(steps)}) / 3.0f;
  t_obj(0, 1, 0) = 0.5f, t_obj(0, 2, 0) = 0.0f;
  for (int step = 0; step < 4; ++step) {
    const auto wave = draw(n, 100 + std::uint64_t(step), 0, 60);
    const std::vector<float> x(wave.begin(), wave.end());
    direct.forward(x.data(), batch, samples, soundnet::mode::training);
    const double ld = direct.kl_loss(t_obj, t_scn);
    direct.zero_grad();
    direct.backward();
    od.step();
    float* host = stage.host(n);
    std::copy(x.begin(), x.end(), host);
    staged.forward_device(stage.upload(n), batch, samples, soundnet::mode::training);
    const double ls = staged.kl_loss(t_obj, t_scn);
    staged.zero_grad();
    staged.backward();
    os.step();
    BOOST_TEST(ls == ld, "step " << step << ": staged loss " << ls << ", direct " << ld);
  }
  const auto pd = direct.parameter_arena(), ps = staged.parameter_arena();
  std::vector<float> hd(pd.size()), hs(ps.size());
  soundnet::ops<cuda, float>::copy_to_host(direct.context(), pd.data(), long(pd.size()), hd.data());
  soundnet::ops<cuda, float>::copy_to_host(staged.context(), ps.data(), long(ps.size()), hs.data());
  BOOST_TEST((hd == hs), "the weights after four steps differ");
  // a NaN in a staged batch is found on the device and named as forward() names it
  float* host = stage.host(n);
  std::fill(host, host + n, 1.0f);
  host[std::size_t(samples) + 5] = std::numeric_limits<float>::quiet_NaN();
  const float* device = stage.upload(n);
  BOOST_CHECK_EXCEPTION(staged.forward_device(device, batch, samples), soundnet::shape_error,
                        [](const soundnet::shape_error& e) {
                          BOOST_TEST_MESSAGE(e.what());
                          return std::string(e.what()).find("clip 1 at sample 5") != std::string::npos;
                        });
  BOOST_CHECK_THROW(staged.kl_loss(t_obj, t_scn), soundnet::error);  // no forward to take a loss of
}

// SoundNet-8 on the GPU in T against the CPU in float64, from the same seed: both forward
// modes, the KL loss, the gradient of every tensor and the parameters after one Adam step.
template <class T>
void check_soundnet8(double forward_tolerance, double gradient_tolerance, double adam_tolerance) {
  using net = soundnet::soundnet8<>;
  soundnet::model<net, T, cuda> gpu(3);
  soundnet::model<net, double, soundnet::cpu> cpu(3);
  const long batch = 2, samples = net::min_input_length() + 65536;  // two output steps
  const long steps = net::output_length(samples);
  const auto wave = draw(std::size_t(batch * samples), 21, 0, 40);
  auto tensor = [](const std::vector<double>& v, long a, long b, long c, auto zero) {
    xt::xtensor<decltype(zero), 3> t = xt::empty<decltype(zero)>({std::size_t(a), std::size_t(b), std::size_t(c)});
    std::copy(v.begin(), v.end(), t.begin());
    return t;
  };
  const auto wg = tensor(wave, batch, 1, samples, T(0));
  const auto wc = tensor(wave, batch, 1, samples, 0.0);
  auto vec = [](const auto& t) { return std::vector<double>(t.begin(), t.end()); };

  gpu.forward(wg, soundnet::mode::inference);
  cpu.forward(wc, soundnet::mode::inference);
  for (const char* name : {"conv1", "pool1", "pool5", "conv7", "conv8_objects"}) {
    const auto e = compare(vec(gpu.output(name)), vec(cpu.output(name)));
    BOOST_TEST_MESSAGE("inference " << name << ": rel L2 " << e.rel_l2);
    BOOST_TEST(e.rel_l2 <= forward_tolerance, "inference " << name << " rel L2 " << e.rel_l2);
  }

  auto targets = [&](int classes, std::uint64_t seed) {
    auto p = draw(std::size_t(batch * classes * steps), seed);
    for (long i = 0; i < batch; ++i)
      for (long j = 0; j < steps; ++j) {
        double sum = 0;
        for (long k = 0; k < classes; ++k) sum += (p[(i * classes + k) * steps + j] = std::exp(p[(i * classes + k) * steps + j]));
        for (long k = 0; k < classes; ++k) p[(i * classes + k) * steps + j] /= sum;
      }
    return p;
  };
  const auto po = targets(net::objects, 31), ps = targets(net::scenes, 32);
  gpu.forward(wg, soundnet::mode::training);
  cpu.forward(wc, soundnet::mode::training);
  for (const char* name : {"bn1", "pool2", "conv5", "conv8_scenes"}) {
    const auto e = compare(vec(gpu.output(name)), vec(cpu.output(name)));
    BOOST_TEST_MESSAGE("training " << name << ": rel L2 " << e.rel_l2);
    BOOST_TEST(e.rel_l2 <= forward_tolerance, "training " << name << " rel L2 " << e.rel_l2);
  }
  gpu.zero_grad();
  cpu.zero_grad();
  const double lg = gpu.kl_loss(tensor(po, batch, net::objects, steps, T(0)), tensor(ps, batch, net::scenes, steps, T(0)));
  const double lc = cpu.kl_loss(tensor(po, batch, net::objects, steps, 0.0), tensor(ps, batch, net::scenes, steps, 0.0));
  BOOST_TEST_MESSAGE("KL loss: GPU " << lg << ", CPU " << lc);
  BOOST_TEST(std::abs(lg - lc) <= forward_tolerance * std::abs(lc));
  gpu.backward();
  cpu.backward();
  std::size_t checked = 0;
  for (auto& p : cpu.parameters()) {
    if (!p.trainable()) continue;
    const auto& q = gpu.parameter_named(p.name);
    std::vector<T> hg(q.size);
    soundnet::ops<cuda, T>::copy_to_host(gpu.context(), q.grad, static_cast<long>(q.size), hg.data());
    const auto e = compare(std::vector<double>(hg.begin(), hg.end()), std::vector<double>(p.grad, p.grad + p.size));
    BOOST_TEST_MESSAGE("d" << p.name << ": rel L2 " << e.rel_l2);
    BOOST_TEST(e.rel_l2 <= gradient_tolerance, "d" << p.name << " rel L2 " << e.rel_l2);
    ++checked;
  }
  BOOST_TEST(checked >= 30u);

  // Adam over the device's arena against the same step on the host, in double, from the GPU's
  // own gradients (a gradient near 0 may differ in sign between precisions, and Adam's first
  // step is lr * sign(g): comparing with the CPU's step would measure that, not Adam).
  struct host_tensor {
    std::vector<double> value, grad;
  };
  std::vector<host_tensor> before;
  for (auto& q : gpu.parameters()) {
    if (!q.trainable()) continue;
    std::vector<T> v(q.size), g(q.size);
    gpu.copy_to_host(q, v.data());
    soundnet::ops<cuda, T>::copy_to_host(gpu.context(), q.grad, static_cast<long>(q.size), g.data());
    before.push_back({{v.begin(), v.end()}, {g.begin(), g.end()}});
  }
  soundnet::adam<T, cuda> optimiser(gpu);
  optimiser.step();
  const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  std::size_t k = 0;
  for (auto& q : gpu.parameters()) {
    if (!q.trainable()) continue;
    std::vector<T> after(q.size);
    gpu.copy_to_host(q, after.data());
    std::vector<double> want(q.size);
    for (std::size_t i = 0; i < q.size; ++i) {
      const double g = before[k].grad[i], m = (1 - b1) * g, v = (1 - b2) * g * g;
      want[i] = before[k].value[i] - lr / (1 - b1) * m / (std::sqrt(v) / std::sqrt(1 - b2) + eps);
    }
    const auto e = compare(std::vector<double>(after.begin(), after.end()), want);
    BOOST_TEST(e.rel_l2 <= adam_tolerance, q.name << " after Adam: rel L2 " << e.rel_l2);
    ++k;
  }
}

BOOST_AUTO_TEST_CASE(soundnet8_training_step_in_float32_matches_the_cpu) { check_soundnet8<float>(1e-4, 1e-3, 1e-6); }
BOOST_AUTO_TEST_CASE(soundnet8_training_step_in_float64_matches_the_cpu) { check_soundnet8<double>(1e-10, 1e-9, 1e-12); }

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
