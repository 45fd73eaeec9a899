// No heap allocation in the steady state: after a warm-up call with the same shapes, an
// inference forward and a whole training step (forward, loss, backward, Adam) allocate nothing.
#define BOOST_TEST_MODULE allocations
#include <boost/test/unit_test.hpp>

#include <soundnet/soundnet.hpp>

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<long> allocations{0};
}

void* operator new(std::size_t size) {
  ++allocations;
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t size, std::align_val_t align) {
  ++allocations;
  const std::size_t a = static_cast<std::size_t>(align);
  if (void* p = std::aligned_alloc(a, (size + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"  // both sides use malloc/free here
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

template <class F>
long count_allocations(F&& f) {
  const long before = allocations.load();
  f();
  return allocations.load() - before;
}

BOOST_AUTO_TEST_CASE(steady_state_inference_and_training_do_not_allocate) {
  using net_t = soundnet::model<soundnet::soundnet8<>>;
  net_t net(3);
  xt::xtensor<float, 3> x = xt::zeros<float>({std::size_t(2), std::size_t(1), std::size_t(230000)});
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(50 * std::sin(0.02 * i));
  const long steps = net_t::output_length(230000);
  xt::xtensor<float, 3> t_obj = xt::ones<float>({std::size_t(2), std::size_t(1000), std::size_t(steps)}) / 1000.0f;
  xt::xtensor<float, 3> t_scn = xt::ones<float>({std::size_t(2), std::size_t(401), std::size_t(steps)}) / 401.0f;

  auto infer = [&] { net.forward(x); };
  infer();
  BOOST_TEST(count_allocations(infer) == 0);

  soundnet::adam opt(net);
  auto train = [&] {
    net.forward(x, soundnet::mode::training);
    net.kl_loss(t_obj, t_scn);
    net.zero_grad();
    net.backward();
    opt.step();
  };
  train();
  BOOST_TEST(count_allocations(train) == 0);
  // sanity: the counter sees allocations
  BOOST_TEST(count_allocations([&] { auto y = net.output("pool5"); }) > 0);
}
