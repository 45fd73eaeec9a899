// Embeds SoundNet features in another program: the README's example.
#include <soundnet/soundnet.hpp>

#include <cmath>
#include <iostream>

int main() {
  soundnet::model<soundnet::soundnet8<>> net(/*seed=*/1);  // or io::load_weights(net, "soundnet8.safetensors")
  const std::size_t samples = 220500;                       // 10 s at 22,050 Hz
  xt::xtensor<float, 3> wave = xt::zeros<float>({std::size_t(1), std::size_t(1), samples});
  for (std::size_t i = 0; i < samples; ++i) wave(0, 0, i) = 100.0f * std::sin(0.06f * i);
  const auto pool5 = net.features(wave, "pool5");  // (1, 256, T)
  std::cout << "pool5: " << pool5.shape(1) << " x " << pool5.shape(2) << "\n";
  return pool5.shape(1) == 256 && pool5.shape(2) == 27 ? 0 : 1;
}
