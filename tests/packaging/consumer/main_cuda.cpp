// The same embedding on a GPU: a consumer that links soundnet::cuda and compiles with its own C++
// compiler (no nvcc). Without a GPU it says why and exits with 77 (ctest: skipped).
#include <soundnet/soundnet.hpp>

#include <cmath>
#include <iostream>

int main() {
  if (soundnet::cuda::device_count() == 0) {
    std::cout << "SKIPPED: " << soundnet::cuda::unavailable_reason() << "\n";
    return 77;
  }
  soundnet::model<soundnet::soundnet8<>, float, soundnet::cuda> net(/*seed=*/1);
  const std::size_t samples = 220500;
  xt::xtensor<float, 3> wave = xt::zeros<float>({std::size_t(1), std::size_t(1), samples});
  for (std::size_t i = 0; i < samples; ++i) wave(0, 0, i) = 100.0f * std::sin(0.06f * i);
  const auto pool5 = net.features(wave, "pool5");
  std::cout << "pool5 on " << net.context().device_name() << ": " << pool5.shape(1) << " x " << pool5.shape(2) << "\n";
  return pool5.shape(1) == 256 && pool5.shape(2) == 27 ? 0 : 1;
}
