// Synchronised batch norm (batch_norm_sync in the device context), without MPI: two models on
// two threads, each given half of a batch and a sum that meets the other thread's, compute what
// one model computes on the whole batch: the mean loss, the mean gradient of every parameter,
// the running statistics. In float64, so that any misplaced sum shows far above rounding.
#define BOOST_TEST_MODULE sync_batch_norm
#include <boost/test/unit_test.hpp>

#include <soundnet/soundnet.hpp>
#include <xtensor/xview.hpp>

#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

using soundnet::soundnet5;
using model_t = soundnet::model<soundnet5<>, double>;

namespace {

// An all-reduce of `parties` threads: each adds its values, all get the total. Two parties add
// in a commutative order (0 + a + b == 0 + b + a), so every party gets the same bits.
class in_process_sum {
 public:
  explicit in_process_sum(int parties) : parties_(parties) {}
  void sum(double* v, long n) {
    std::unique_lock<std::mutex> lock(m_);
    if (arrived_ == 0) acc_.assign(static_cast<std::size_t>(n), 0.0);
    BOOST_REQUIRE_EQUAL(acc_.size(), static_cast<std::size_t>(n));  // every party sums the same shape
    for (long i = 0; i < n; ++i) acc_[std::size_t(i)] += v[i];
    ++calls_;
    wait_for_all(lock);
    std::copy(acc_.begin(), acc_.end(), v);
    wait_for_all(lock);  // nobody starts the next sum before every party has read this one
  }
  long calls() const { return calls_; }

 private:
  void wait_for_all(std::unique_lock<std::mutex>& lock) {
    const long generation = generation_;
    if (++arrived_ == parties_) {
      arrived_ = 0, ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != generation; });
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<double> acc_;
  int parties_, arrived_ = 0;
  long generation_ = 0, calls_ = 0;
};

struct party final : soundnet::batch_norm_sync {
  in_process_sum& shared;
  explicit party(in_process_sum& s) : shared(s) {}
  void sum(double* v, long n) override { shared.sum(v, n); }
};

using tensor = xt::xtensor<double, 3>;

tensor waveforms(std::size_t batch, std::size_t samples) {
  tensor x = xt::zeros<double>({batch, std::size_t(1), samples});
  for (std::size_t n = 0; n < batch; ++n)
    for (std::size_t i = 0; i < samples; ++i)
      x(n, 0, i) = 100 * std::sin(0.01 * double(i) * double(n + 1)) + 20 * std::sin(0.37 * double(i) + double(n)) + 7.0 * n;
  return x;
}

tensor targets(std::size_t batch, std::size_t classes, std::size_t steps, std::size_t salt) {
  tensor t = xt::ones<double>({batch, classes, steps});
  for (std::size_t n = 0; n < batch; ++n)
    for (std::size_t j = 0; j < steps; ++j) t(n, (7 * n + salt + j) % classes, j) += 50.0;
  for (std::size_t n = 0; n < batch; ++n)
    for (std::size_t j = 0; j < steps; ++j) {
      double z = 0;
      for (std::size_t k = 0; k < classes; ++k) z += t(n, k, j);
      for (std::size_t k = 0; k < classes; ++k) t(n, k, j) /= z;
    }
  return t;
}

tensor rows(const tensor& t, std::size_t first, std::size_t count) {
  return xt::view(t, xt::range(first, first + count), xt::all(), xt::all());
}

struct step_result {
  double loss = 0;
  std::vector<double> grads, stats;
};

step_result one_step(model_t& net, const tensor& x, const tensor& t_obj, const tensor& t_scn) {
  net.forward(x, soundnet::mode::training);
  step_result r;
  r.loss = net.kl_loss(t_obj, t_scn);
  net.zero_grad();
  net.backward();
  const auto g = net.gradients(), s = net.statistics();
  r.grads.assign(g.data(), g.data() + g.size());
  r.stats.assign(s.data(), s.data() + s.size());
  return r;
}

double relative(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0, n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d += (a[i] - b[i]) * (a[i] - b[i]), n += a[i] * a[i];
  return std::sqrt(d / n);
}

}  // namespace

BOOST_AUTO_TEST_CASE(two_halves_with_synchronised_batch_norm_are_the_whole_batch) {
  const std::size_t batch = 4, samples = std::size_t(model_t::min_input_length()) + 30000;
  const auto x = waveforms(batch, samples);
  const std::size_t steps = static_cast<std::size_t>(model_t::output_length(long(samples)));
  const auto t_obj = targets(batch, 1000, steps, 1), t_scn = targets(batch, 401, steps, 5);

  model_t whole(11);
  const step_result all = one_step(whole, x, t_obj, t_scn);

  in_process_sum shared(2);
  party p0(shared), p1(shared);
  model_t half0(11), half1(11);
  half0.synchronise_batch_norm(&p0);
  half1.synchronise_batch_norm(&p1);
  step_result r0, r1;
  std::thread other([&] { r1 = one_step(half1, rows(x, 2, 2), rows(t_obj, 2, 2), rows(t_scn, 2, 2)); });
  r0 = one_step(half0, rows(x, 0, 2), rows(t_obj, 0, 2), rows(t_scn, 0, 2));
  other.join();

  // 4 batch norms: 2 sums forward and 1 backward each, per party
  BOOST_TEST(shared.calls() == 2 * 4 * 3);
  BOOST_TEST(std::abs((r0.loss + r1.loss) / 2 - all.loss) <= 1e-12 * all.loss);
  std::vector<double> mean(all.grads.size());
  for (std::size_t i = 0; i < mean.size(); ++i) mean[i] = (r0.grads[i] + r1.grads[i]) / 2;
  BOOST_TEST_INFO("relative L2 difference of the gradient arena: " << relative(all.grads, mean));
  BOOST_TEST(relative(all.grads, mean) <= 1e-10);
  for (const auto& p : whole.parameters()) {  // tensor by tensor, the conv biases before batch norm too
    if (!p.trainable()) continue;
    const std::size_t at = static_cast<std::size_t>(p.grad - whole.gradients().data());
    double worst = 0, scale = 0;
    for (std::size_t i = 0; i < p.size; ++i) {
      worst = std::max(worst, std::abs(all.grads[at + i] - mean[at + i]));
      scale = std::max(scale, std::abs(all.grads[at + i]));
    }
    BOOST_TEST_INFO(p.name << ": largest difference " << worst << " of " << scale);
    BOOST_TEST(worst <= 1e-9 * std::max(scale, 1e-3));
  }
  BOOST_TEST(r0.stats == r1.stats, boost::test_tools::per_element());  // every party holds the same
  BOOST_TEST(relative(all.stats, r0.stats) <= 1e-12);
}

BOOST_AUTO_TEST_CASE(without_it_each_half_normalises_its_own_rows) {
  // The difference synchronisation removes: the halves' own statistics give another loss.
  const std::size_t batch = 4, samples = std::size_t(model_t::min_input_length()) + 30000;
  const auto x = waveforms(batch, samples);
  const std::size_t steps = static_cast<std::size_t>(model_t::output_length(long(samples)));
  const auto t_obj = targets(batch, 1000, steps, 1), t_scn = targets(batch, 401, steps, 5);
  model_t whole(11), half0(11), half1(11);
  const double all = one_step(whole, x, t_obj, t_scn).loss;
  const double h0 = one_step(half0, rows(x, 0, 2), rows(t_obj, 0, 2), rows(t_scn, 0, 2)).loss;
  const double h1 = one_step(half1, rows(x, 2, 2), rows(t_obj, 2, 2), rows(t_scn, 2, 2)).loss;
  BOOST_TEST_INFO("whole batch " << all << ", halves " << h0 << " and " << h1);
  BOOST_TEST(std::abs((h0 + h1) / 2 - all) > 1e-4 * all);
}

BOOST_AUTO_TEST_CASE(inference_and_a_cleared_sync_do_not_call_it) {
  in_process_sum shared(1);
  party p(shared);
  model_t net(3);
  net.synchronise_batch_norm(&p);
  const auto x = waveforms(1, std::size_t(model_t::min_input_length()));
  net.forward(x, soundnet::mode::inference);
  BOOST_TEST(shared.calls() == 0);
  net.forward(x, soundnet::mode::training);
  BOOST_TEST(shared.calls() == 2 * 4);  // one party: the sums are its own, but every layer asks
  net.synchronise_batch_norm(nullptr);
  net.forward(x, soundnet::mode::training);
  BOOST_TEST(shared.calls() == 2 * 4);
}
