// Comparison with committed PyTorch (float64) reference values, for machines without
// python3-torch. tests/reference/make_golden.py wrote tests/data/golden-soundnet5.safetensors;
// the weights, inputs and targets are the closed-form formulas repeated here.
#define BOOST_TEST_MODULE golden
#include <boost/test/unit_test.hpp>

#include <soundnet/soundnet.hpp>

#include <cmath>

namespace {

constexpr long samples = 60000;
const soundnet::io::safetensors_file& golden() {
  static const auto file = soundnet::io::read_safetensors(SOUNDNET_GOLDEN_FILE);
  return file;
}

std::size_t stride(std::size_t size) { return std::max<std::size_t>(53, size / 2000); }

template <class Model>
void formula_weights(Model& net) {
  std::size_t j = 0;
  for (auto& p : net.parameters()) {
    for (std::size_t i = 0; i < p.size; ++i) {
      const double s = std::sin(0.1 + 0.7 * double(i) + 1.3 * double(j));
      const bool bn = p.name.rfind("bn", 0) == 0;
      double v;
      if (p.name.find("running_var") != std::string::npos) v = 1.0 + 0.5 * (1.0 + s);
      else if (p.name.find("running_mean") != std::string::npos) v = 0.1 * s;
      else if (bn && p.name.find(".weight") != std::string::npos) v = 1.0 + 0.2 * s;
      else if (p.name.find(".weight") != std::string::npos) v = s * std::sqrt(3.0 / double(p.shape[1] * p.shape[2]));
      else v = 0.1 * s;
      p.value[i] = static_cast<typename Model::value_type>(static_cast<float>(v));
    }
    ++j;
  }
}

template <class T>
xt::xtensor<T, 3> formula_waves(std::size_t clips) {
  xt::xtensor<T, 3> x = xt::empty<T>({clips, std::size_t(1), std::size_t(samples)});
  for (std::size_t c = 0; c < clips; ++c)
    for (long i = 0; i < samples; ++i)
      x(c, 0, i) = static_cast<float>(100 * std::sin(0.05 * i + c) + 30 * std::sin(0.31 * i + 1 + 2 * double(c)));
  return x;
}

template <class T>
xt::xtensor<T, 3> formula_targets(std::size_t classes, long steps) {
  xt::xtensor<T, 3> p = xt::empty<T>({std::size_t(2), classes, std::size_t(steps)});
  for (std::size_t c = 0; c < 2; ++c)
    for (long t = 0; t < steps; ++t) {
      double sum = 0;
      for (std::size_t k = 0; k < classes; ++k) sum += std::exp(2 * std::sin(0.37 * k + 0.11 * t + c));
      for (std::size_t k = 0; k < classes; ++k) p(c, k, t) = std::exp(2 * std::sin(0.37 * k + 0.11 * t + c)) / sum;
    }
  return p;
}

template <class T>
double subsampled_error(const T* ours, std::size_t size, const std::string& key) {
  const auto want = golden().values<double>(key);
  const std::size_t s = stride(size);
  BOOST_REQUIRE_EQUAL(want.size(), (size + s - 1) / s);
  double diff = 0, norm = 0;
  for (std::size_t k = 0; k < want.size(); ++k) {
    const double d = double(ours[k * s]) - want[k];
    diff += d * d, norm += want[k] * want[k];
  }
  return std::sqrt(diff / std::max(norm, 1e-300));
}

}  // namespace

BOOST_AUTO_TEST_CASE(eval_activations_match_pytorch_float32) {
  soundnet::model<soundnet::soundnet5<>> net;
  formula_weights(net);
  net.forward(formula_waves<float>(1), soundnet::mode::inference, soundnet::keep::all);
  for (const auto& name : net.output_names()) {
    const auto out = net.output(name);
    const double err = subsampled_error(out.data(), out.size(), "eval." + name);
    BOOST_TEST_MESSAGE(name << ": relative L2 error " << err);
    BOOST_TEST(err <= 1e-4);
  }
}

BOOST_AUTO_TEST_CASE(fused_inference_matches_pytorch_float32) {
  soundnet::model<soundnet::soundnet5<>> net;
  formula_weights(net);
  net.forward(formula_waves<float>(1));  // keep::block_outputs: conv + BN + ReLU fused
  std::size_t compared = 0;
  for (const auto& name : net.output_names()) {
    if (net.inside_fused_block(name)) {
      BOOST_CHECK_THROW(net.output(name), soundnet::error);
      continue;
    }
    const auto out = net.output(name);
    const double err = subsampled_error(out.data(), out.size(), "eval." + name);
    BOOST_TEST_INFO(name << ": relative L2 error " << err);
    BOOST_TEST(err <= 1e-4);
    ++compared;
  }
  BOOST_TEST(compared == 4u + 3u + 2u);  // conv1..conv4, pool1..pool3, two heads
}

BOOST_AUTO_TEST_CASE(first_training_step_matches_pytorch_float64) {
  soundnet::model<soundnet::soundnet5<>, double> net;
  formula_weights(net);
  net.forward(formula_waves<double>(2), soundnet::mode::training);
  const long steps = net.output_length(samples);
  const double loss = net.kl_loss(formula_targets<double>(1000, steps), formula_targets<double>(401, steps));
  // the golden file stores float32: 6e-8 relative rounding
  BOOST_TEST(loss == golden().values<double>("train.loss")[0], boost::test_tools::tolerance(2e-7));
  net.zero_grad();
  net.backward();
  for (const auto& p : net.parameters()) {
    if (!p.trainable()) {
      const auto want = golden().values<double>("after." + p.name);  // stored whole
      BOOST_REQUIRE_EQUAL(want.size(), p.size);
      double err = 0;
      for (std::size_t i = 0; i < p.size; ++i) err = std::max(err, std::abs(p.value[i] - want[i]) / std::abs(want[i]));
      BOOST_TEST_INFO(p.name << " after one step: " << err);
      BOOST_TEST(err <= 2e-7);
      continue;
    }
    const bool bias_before_bn = p.name.find("conv") == 0 && p.name.find(".bias") != std::string::npos &&
                                p.name.find('_') == std::string::npos;
    if (bias_before_bn) continue;  // exact gradient 0: checked against the terms in check_against_torch.py
    const double err = subsampled_error(p.grad, p.size, "grad." + p.name);
    BOOST_TEST_INFO(p.name << ": relative L2 error " << err);
    BOOST_TEST(err <= 1e-6);
  }
}
