// soundnet-embed: SoundNet-8 features of a waveform, as an application embeds them.
//
//   soundnet-embed [WAVE.npy] [--weights W.safetensors] [--layer pool5]
//
// Without arguments: the bundled ESC-10 clip and a seeded (untrained) SoundNet-8. Short clips
// are repeated circularly to 10 s, as in the authors' evaluation. Prints the time-averaged
// feature vector's size and first values.
#include <soundnet/soundnet.hpp>

#include <iostream>
#include <string>
#include <xtensor/xview.hpp>

int main(int argc, char** argv) try {
  std::string wave_path = SOUNDNET_EXAMPLE_DATA "/esc10-dog-1-100032-A.npy", weights, layer = "pool5";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--weights" || a == "--layer") && i + 1 < argc) (a == "--weights" ? weights : layer) = argv[++i];
    else if (a.rfind("--", 0) == 0) throw std::invalid_argument("unknown option " + a);
    else wave_path = a;
  }
  soundnet::model<soundnet::soundnet8<>> net(/*seed=*/1);
  if (!weights.empty()) soundnet::io::load_weights(net, weights);

  const auto clip = soundnet::io::read_npy<float>(wave_path);  // (samples,) at 22,050 Hz, in [-256, 256]
  if (clip.dimension() != 1 || clip.size() == 0) throw soundnet::io_error(wave_path, "expected a non-empty 1-D waveform");
  const std::size_t samples = std::max<std::size_t>(clip.size(), 220500);  // repeat to 10 s
  xt::xtensor<float, 3> wave = xt::empty<float>({std::size_t(1), std::size_t(1), samples});
  for (std::size_t i = 0; i < samples; ++i) wave(0, 0, i) = clip(i % clip.size());

  const auto features = net.features(wave, layer);                            // (1, C, T)
  const xt::xtensor<float, 1> embedding = xt::mean(xt::view(features, 0), {1});  // (C,)
  std::cout << wave_path << ": " << layer << " " << features.shape(1) << " x " << features.shape(2)
            << ", time-averaged embedding of " << embedding.size() << " values:";
  for (std::size_t c = 0; c < std::min<std::size_t>(6, embedding.size()); ++c) std::cout << " " << embedding(c);
  std::cout << " ...\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "soundnet-embed: error: " << e.what() << "\n";
  return 1;
}
