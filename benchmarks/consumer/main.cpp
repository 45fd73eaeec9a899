// SoundNet-8 on one 20 s clip (batch 1), timed: what an application that embeds SoundNet sees.
//   consumer-bench [repeats] [threads]    prints "median_ms <x>" over the repeats (after a warm-up)
#include <soundnet/soundnet.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 15;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  soundnet::set_num_threads(threads);
  soundnet::model<soundnet::soundnet8<>> net(1);
  xt::xtensor<float, 3> x = xt::empty<float>({std::size_t(1), std::size_t(1), std::size_t(441000)});
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(60 * std::sin(0.03 * i) + 20 * std::sin(1.7 * i));
  net.forward(x);  // warm-up
  std::vector<double> ms;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    net.forward(x);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  std::printf("median_ms %.3f\n", ms[ms.size() / 2]);
  return 0;
}
