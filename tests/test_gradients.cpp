// Finite-difference checks (double precision) of every operation's backward, the KL loss, and
// the whole SoundNet-5.
#define BOOST_TEST_MODULE gradients
#include <boost/test/unit_test.hpp>

#include <soundnet/soundnet.hpp>

#include <functional>
#include <random>
#include <vector>

using ops = soundnet::ops<soundnet::cpu, double>;
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

// Central differences of f with respect to every element of x, compared with `analytic`.
void check_gradient(const std::string& what, vec& x, const std::function<double()>& f, const vec& analytic,
                    double eps = 1e-6, double tol = 1e-6) {
  BOOST_REQUIRE_EQUAL(x.size(), analytic.size());
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
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

BOOST_AUTO_TEST_CASE(conv1d_matches_finite_differences) {
  struct geometry_case {
    long c_in, c_out, kernel, stride, padding, t_in;
  };
  for (const auto& gc : {geometry_case{3, 4, 5, 2, 2, 17}, geometry_case{2, 3, 4, 3, 0, 20},
                         geometry_case{1, 2, 8, 1, 4, 9}, geometry_case{2, 2, 3, 2, 5, 6}}) {
    const long n = 2;
    const long t_out = (gc.t_in + 2 * gc.padding - gc.kernel) / gc.stride + 1;
    soundnet::conv_geometry g{n, gc.c_in, gc.t_in, gc.c_out, gc.kernel, gc.stride, gc.padding, t_out};
    vec x = random_vector(n * gc.c_in * gc.t_in, 1), w = random_vector(gc.c_out * gc.c_in * gc.kernel, 2),
        b = random_vector(gc.c_out, 3), r = random_vector(n * gc.c_out * t_out, 4);
    ops::buffer ws;
    auto loss = [&] {
      vec y(n * gc.c_out * t_out);
      ops::conv1d_forward(x.data(), w.data(), b.data(), y.data(), g, ws);
      return dot(r, y);
    };
    vec dx(x.size()), dw(w.size(), 0.0), db(b.size(), 0.0);
    ops::conv1d_backward(x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data(), g, ws);
    check_gradient("conv dx", x, loss, dx);
    check_gradient("conv dw", w, loss, dw);
    check_gradient("conv db", b, loss, db);
  }
}

BOOST_AUTO_TEST_CASE(conv1d_forward_matches_direct_sum) {
  // An independent check of the forward convolution against its definition.
  const long n = 1, c_in = 2, c_out = 3, k = 4, s = 2, p = 3, t_in = 11;
  const long t_out = (t_in + 2 * p - k) / s + 1;
  soundnet::conv_geometry g{n, c_in, t_in, c_out, k, s, p, t_out};
  vec x = random_vector(c_in * t_in, 5), w = random_vector(c_out * c_in * k, 6), b = random_vector(c_out, 7);
  vec y(c_out * t_out);
  ops::buffer ws;
  ops::conv1d_forward(x.data(), w.data(), b.data(), y.data(), g, ws);
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

BOOST_AUTO_TEST_CASE(batch_norm_matches_finite_differences) {
  const long n = 2, c = 3, t = 11;
  vec x = random_vector(n * c * t, 8, 2.0), gamma = random_vector(c, 9), beta = random_vector(c, 10),
      r = random_vector(n * c * t, 11);
  for (double& g : gamma) g += 1.0;
  for (bool training : {true, false}) {
    vec rm = random_vector(c, 12, 0.3), rv(c, 1.5), mean(c), invstd(c);
    auto forward = [&](vec& y) {
      if (training) {
        vec rm2 = rm, rv2 = rv;  // running statistics are a side effect, not an input
        ops::batch_norm_forward_train(x.data(), n, c, t, gamma.data(), beta.data(), 1e-5, 0.1, rm2.data(), rv2.data(),
                                      mean.data(), invstd.data(), y.data());
      } else {
        ops::batch_norm_forward_eval(x.data(), n, c, t, gamma.data(), beta.data(), rm.data(), rv.data(), 1e-5,
                                     y.data());
        for (long ch = 0; ch < c; ++ch) mean[ch] = rm[ch], invstd[ch] = 1.0 / std::sqrt(rv[ch] + 1e-5);
      }
    };
    auto loss = [&] {
      vec y(x.size());
      forward(y);
      return dot(r, y);
    };
    vec y(x.size());
    forward(y);
    vec dx(x.size()), dgamma(c, 0.0), dbeta(c, 0.0);
    ops::batch_norm_backward(x.data(), r.data(), n, c, t, gamma.data(), mean.data(), invstd.data(), training,
                             dx.data(), dgamma.data(), dbeta.data());
    const std::string mode = training ? "training" : "inference";
    check_gradient("batch norm dx " + mode, x, loss, dx);
    check_gradient("batch norm dgamma " + mode, gamma, loss, dgamma);
    check_gradient("batch norm dbeta " + mode, beta, loss, dbeta);
  }
}

BOOST_AUTO_TEST_CASE(batch_norm_running_statistics_follow_pytorch_rule) {
  // momentum 0.1, unbiased variance for the running estimate, biased for normalising.
  const long n = 2, c = 1, t = 3;
  vec x = {1, 2, 4, -1, 0, 6}, gamma = {1}, beta = {0}, rm = {0.5}, rv = {2.0}, mean(1), invstd(1), y(6);
  ops::batch_norm_forward_train(x.data(), n, c, t, gamma.data(), beta.data(), 1e-5, 0.1, rm.data(), rv.data(),
                                mean.data(), invstd.data(), y.data());
  const double mu = 2.0, biased = (1 + 0 + 4 + 9 + 4 + 16) / 6.0, unbiased = biased * 6 / 5;
  BOOST_TEST(rm[0] == 0.9 * 0.5 + 0.1 * mu, boost::test_tools::tolerance(1e-14));
  BOOST_TEST(rv[0] == 0.9 * 2.0 + 0.1 * unbiased, boost::test_tools::tolerance(1e-14));
  BOOST_TEST(y[0] == (1 - mu) / std::sqrt(biased + 1e-5), boost::test_tools::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(relu_and_max_pool_match_finite_differences) {
  const long rows = 3, t_in = 23, kernel = 4, stride = 3, t_out = (t_in - kernel) / stride + 1;
  vec x = random_vector(rows * t_in, 13);
  for (double& v : x) v += v > 0 ? 0.05 : -0.05;  // keep away from the ReLU kink
  vec r = random_vector(rows * t_out, 14);
  auto loss = [&] {
    vec a(x.size()), y(rows * t_out);
    ops::relu_forward(x.data(), a.data(), static_cast<long>(x.size()));
    ops::max_pool_forward(a.data(), rows, t_in, kernel, stride, t_out, y.data(), nullptr);
    return dot(r, y);
  };
  vec a(x.size()), y(rows * t_out), da(x.size()), dx(x.size());
  std::vector<std::int32_t> argmax(rows * t_out);
  ops::relu_forward(x.data(), a.data(), static_cast<long>(x.size()));
  ops::max_pool_forward(a.data(), rows, t_in, kernel, stride, t_out, y.data(), argmax.data());
  ops::max_pool_backward(r.data(), argmax.data(), rows, t_in, t_out, da.data());
  ops::relu_backward(a.data(), da.data(), dx.data(), static_cast<long>(x.size()));
  check_gradient("relu + max-pool dx", x, loss, dx, 1e-7);
  // floor mode: the last partial window is dropped
  BOOST_TEST(t_out == 7);
}

BOOST_AUTO_TEST_CASE(kl_loss_matches_definition_and_finite_differences) {
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
  const double loss = ops::softmax_kl(z.data(), n, c_total, c_begin, c, t, p.data(), divisor, grad.data());
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
  auto f = [&] { return ops::softmax_kl(z.data(), n, c_total, c_begin, c, t, p.data(), divisor, nullptr); };
  check_gradient("KL loss d logits", z, f, grad);
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
    for (std::size_t i : {std::size_t(0), p.size / 3, p.size / 2, p.size - 1}) {
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
  BOOST_TEST(checked == 4u * 20u);  // 4 blocks x (conv w, b, bn w, b) + 2 heads x (w, b)
}
