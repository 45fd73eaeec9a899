// Finite-difference checks (double precision) of every operation's backward, the KL loss, and
// the whole SoundNet-5.
#define BOOST_TEST_MODULE gradients
#include <boost/test/unit_test.hpp>

#include <soundnet/soundnet.hpp>

#include "op_cases.hpp"

#include <functional>
#include <random>
#include <vector>

using ops = soundnet::ops<soundnet::cpu, double>;
soundnet::cpu::context ctx;
using vec = std::vector<double>;

namespace {

vec random_vector(std::size_t n, std::uint64_t seed, double scale = 1.0) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> d(0.0, scale);
  vec v(n);
  for (auto& x : v) x = d(g);
  return v;
}

double dot(const vec& a, const vec& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Under a sanitizer (SOUNDNET_TEST_UNDER_SANITIZER) the arithmetic runs ten- to thirty-fold
// slower: the same checks then take every 11th element (and the last) instead of all.
#ifdef SOUNDNET_TEST_UNDER_SANITIZER
constexpr std::size_t fd_stride = 11;
#else
constexpr std::size_t fd_stride = 1;
#endif

// Central differences of f with respect to every element of x (every fd_stride-th under a
// sanitizer), compared with `analytic`.
void check_gradient(const std::string& what, vec& x, const std::function<double()>& f, const vec& analytic,
                    double eps = 1e-6, double tol = 1e-6) {
  BOOST_REQUIRE_EQUAL(x.size(), analytic.size());
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (i % fd_stride != 0 && i + 1 != x.size()) continue;
    const double keep = x[i];
    x[i] = keep + eps;
    const double up = f();
    x[i] = keep - eps;
    const double down = f();
    x[i] = keep;
    const double numeric = (up - down) / (2 * eps);
    const double err = std::abs(numeric - analytic[i]) / std::max(1.0, std::abs(numeric));
    worst = std::max(worst, err);
  }
  BOOST_TEST_INFO(what << ": worst error " << worst);
  BOOST_TEST(worst <= tol);
}

}  // namespace

// Every small case of the shared operation list (tests/op_cases.hpp): the backward against
// central differences of the forward, for every differentiable input.
BOOST_AUTO_TEST_CASE(every_op_case_matches_finite_differences) {
  using namespace soundnet::testing;
  op_runner<soundnet::cpu, double> run;
  std::size_t cases = 0;
  for (const auto& o : op_cases()) {
    if (o.large || o.kind == op_kind::conv1d_bn_relu || o.kind == op_kind::adam) continue;  // no backward
    auto in = make_inputs(o, 7);
    const vec r = random_vector(forward_size(o), 99);
    const auto analytic = run.backward(o, in, r);
    BOOST_TEST_CONTEXT(o.name) {
      BOOST_REQUIRE(!in.differentiable.empty());
      for (const auto& name : in.differentiable) {
        auto& x = in.tensors.at(name);
        auto loss = [&] {
          auto y = run.forward(o, in);
          y.resize(forward_size(o));  // batch norm also returns its statistics
          return dot(r, y);
        };
        check_gradient(o.name + " d" + name, x, loss, analytic.at(name), o.kind == op_kind::max_pool ? 1e-7 : 1e-6);
      }
    }
    ++cases;
  }
  BOOST_TEST(cases >= 10u);
}

BOOST_AUTO_TEST_CASE(conv1d_forward_matches_direct_sum) {
  // An independent check of the forward convolution against its definition.
  const long n = 1, c_in = 2, c_out = 3, k = 4, s = 2, p = 3, t_in = 11;
  const long t_out = (t_in + 2 * p - k) / s + 1;
  soundnet::conv_geometry g{n, c_in, t_in, c_out, k, s, p, t_out};
  vec x = random_vector(c_in * t_in, 5), w = random_vector(c_out * c_in * k, 6), b = random_vector(c_out, 7);
  vec y(c_out * t_out);
  ops::conv1d_forward(ctx, x.data(), w.data(), b.data(), y.data(), g);
  for (long o = 0; o < c_out; ++o)
    for (long t = 0; t < t_out; ++t) {
      double sum = b[o];
      for (long c = 0; c < c_in; ++c)
        for (long j = 0; j < k; ++j) {
          const long idx = t * s + j - p;
          if (idx >= 0 && idx < t_in) sum += w[(o * c_in + c) * k + j] * x[c * t_in + idx];
        }
      BOOST_TEST(y[o * t_out + t] == sum, boost::test_tools::tolerance(1e-12));
    }
}

BOOST_AUTO_TEST_CASE(batch_norm_running_statistics_follow_pytorch_rule) {
  // momentum 0.1, unbiased variance for the running estimate, biased for normalising.
  const long n = 2, c = 1, t = 3;
  vec x = {1, 2, 4, -1, 0, 6}, gamma = {1}, beta = {0}, rm = {0.5}, rv = {2.0}, mean(1), invstd(1), y(6);
  ops::batch_norm_forward_train(ctx, x.data(), n, c, t, gamma.data(), beta.data(), 1e-5, 0.1, rm.data(), rv.data(),
                                mean.data(), invstd.data(), y.data());
  const double mu = 2.0, biased = (1 + 0 + 4 + 9 + 4 + 16) / 6.0, unbiased = biased * 6 / 5;
  BOOST_TEST(rm[0] == 0.9 * 0.5 + 0.1 * mu, boost::test_tools::tolerance(1e-14));
  BOOST_TEST(rv[0] == 0.9 * 2.0 + 0.1 * unbiased, boost::test_tools::tolerance(1e-14));
  BOOST_TEST(y[0] == (1 - mu) / std::sqrt(biased + 1e-5), boost::test_tools::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(max_pool_drops_the_last_partial_window) {
  // Floor mode (PyTorch's default, the authors' Torch7): 23 steps, kernel 4, stride 3 give 7
  // windows covering steps 0..21; step 22 belongs to no window, so a huge value there must not
  // reach the output and gets no gradient.
  const long t_in = 23, kernel = 4, stride = 3;
  const long t_out = soundnet::max_pool1d<4, 3>::out_length(t_in);
  BOOST_REQUIRE(t_out >= 1);
  vec x = random_vector(t_in, 13), y(t_out + 1, -1.0), dx(t_in, -1.0), dy(t_out, 1.0);
  x[t_in - 1] = 1e6;
  std::vector<std::int32_t> argmax(t_out);
  ops::max_pool_forward(ctx, x.data(), 1, t_in, kernel, stride, t_out, y.data(), argmax.data());
  for (long t = 0; t < t_out; ++t) BOOST_TEST(y[t] < 1e6);
  BOOST_TEST(y[t_out] == -1.0);  // nothing written past the floor-mode length
  ops::max_pool_backward(ctx, dy.data(), argmax.data(), 1, t_in, t_out, dx.data());
  BOOST_TEST(dx[t_in - 1] == 0.0);
  double total = 0;
  for (double v : dx) total += v;
  BOOST_TEST(total == double(t_out));  // each window passes its gradient to exactly one sample
}

BOOST_AUTO_TEST_CASE(kl_loss_matches_its_definition) {
  const long n = 2, c_total = 7, t = 3;
  vec z = random_vector(n * c_total * t, 15, 2.0);
  // targets for channels [2, 7): distributions over 5 classes per (n, t)
  const long c_begin = 2, c = 5;
  vec p = random_vector(n * c * t, 16);
  for (long i = 0; i < n; ++i)
    for (long j = 0; j < t; ++j) {
      double s = 0;
      for (long k = 0; k < c; ++k) s += (p[(i * c + k) * t + j] = std::exp(p[(i * c + k) * t + j]));
      for (long k = 0; k < c; ++k) p[(i * c + k) * t + j] /= s;
    }
  p[1 * t + 0] = 0.0;  // a zero target probability contributes nothing (0 log 0 = 0)
  const double divisor = n * t;
  vec grad(z.size(), 0.0);
  const double loss = ops::softmax_kl(ctx, z.data(), n, c_total, c_begin, c, t, p.data(), divisor, grad.data());
  // direct definition
  double expected = 0;
  for (long i = 0; i < n; ++i)
    for (long j = 0; j < t; ++j) {
      double se = 0;
      for (long k = 0; k < c; ++k) se += std::exp(z[(i * c_total + c_begin + k) * t + j]);
      for (long k = 0; k < c; ++k) {
        const double pk = p[(i * c + k) * t + j];
        const double q = std::exp(z[(i * c_total + c_begin + k) * t + j]) / se;
        if (pk > 0) expected += pk * std::log(pk / q);
      }
    }
  BOOST_TEST(loss == expected / divisor, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(loss > 0);
  // channels outside the head get no gradient
  BOOST_TEST(grad[0] == 0.0);
}

BOOST_AUTO_TEST_CASE(whole_soundnet5_matches_finite_differences) {
  using net_t = soundnet::model<soundnet::soundnet5<3, 2>, double>;
  net_t net(42);
  // non-trivial batch-norm affine parameters
  std::mt19937_64 g(3);
  std::normal_distribution<double> d(0.0, 0.2);
  for (auto& p : net.parameters())
    if (p.name.rfind("bn", 0) == 0 && p.trainable())
      for (std::size_t i = 0; i < p.size; ++i) p.value[i] += d(g);
  const long samples = net_t::min_input_length() + 2 * (12 * 2 * 8 * 2 * 8 * 2 * 8 * 2);  // two more output steps
  const long steps = net_t::output_length(samples);
  BOOST_REQUIRE(steps == 3);
  xt::xtensor<double, 3> x = xt::zeros<double>({2ul, 1ul, std::size_t(samples)});
  vec noise = random_vector(x.size(), 17);
  std::copy(noise.begin(), noise.end(), x.data());
  auto make_target = [&](std::size_t classes, std::uint64_t seed) {
    xt::xtensor<double, 3> t = xt::zeros<double>({2ul, classes, std::size_t(steps)});
    vec r = random_vector(t.size(), seed);
    for (std::size_t i = 0; i < 2; ++i)
      for (long j = 0; j < steps; ++j) {
        double s = 0;
        for (std::size_t k = 0; k < classes; ++k) s += (t(i, k, j) = std::exp(r[(i * classes + k) * steps + j]));
        for (std::size_t k = 0; k < classes; ++k) t(i, k, j) /= s;
      }
    return t;
  };
  const auto t_obj = make_target(3, 18), t_scn = make_target(2, 19);
  auto loss = [&] {
    net.forward(x, soundnet::mode::training);
    return net.kl_loss(t_obj, t_scn);
  };
  loss();
  net.zero_grad();
  net.backward();
  std::size_t checked = 0;
  for (auto& p : net.parameters()) {
    if (!p.trainable()) continue;
    const vec analytic(p.grad, p.grad + p.size);
    double worst = 0;
#ifdef SOUNDNET_TEST_UNDER_SANITIZER
    const std::vector<std::size_t> at = {p.size / 3, p.size - 1};
#else
    const std::vector<std::size_t> at = {std::size_t(0), p.size / 3, p.size / 2, p.size - 1};
#endif
    for (std::size_t i : at) {
      // A small step: with ~2M ReLU inputs and max-pool windows, a step of 1e-6 moves some
      // activation across a kink, where the loss is not differentiable; 1e-8 still leaves
      // double rounding (~1e-16 / 1e-8) far below the tolerance.
      const double keep = p.value[i], eps = 1e-8;
      p.value[i] = keep + eps;
      const double up = loss();
      p.value[i] = keep - eps;
      const double down = loss();
      p.value[i] = keep;
      const double numeric = (up - down) / (2 * eps);
      const double scale = std::max(std::abs(numeric), 1e-3);
      worst = std::max(worst, std::abs(numeric - analytic[i]) / scale);
      BOOST_TEST_MESSAGE(p.name << "[" << i << "] numeric " << numeric << " analytic " << analytic[i]);
      ++checked;
    }
    BOOST_TEST_INFO(p.name << ": worst error " << worst);
    BOOST_TEST(worst <= 1e-4);
  }
#ifdef SOUNDNET_TEST_UNDER_SANITIZER
  BOOST_TEST(checked == 2u * 20u);
#else
  BOOST_TEST(checked == 4u * 20u);
#endif  // 4 blocks x (conv w, b, bn w, b) + 2 heads x (w, b)
}
