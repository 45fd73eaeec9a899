#include <soundnet/app/waveform.hpp>

namespace soundnet::app {

std::vector<float> read_waveform(const std::string& path) {
  const auto a = io::read_npy<float>(path);
  const bool ok = a.dimension() == 1 || (a.dimension() == 2 && a.shape(0) == 1);
  if (!ok) {
    std::string s;
    for (auto d : a.shape()) s += (s.empty() ? "" : ", ") + std::to_string(d);
    throw io_error(path, "a waveform must have shape (samples,) or (1, samples); got (" + s + ")");
  }
  if (a.size() == 0) throw io_error(path, "the waveform is empty");
  return std::vector<float>(a.data(), a.data() + a.size());
}

void tile_circularly(std::vector<float>& wave, long samples) {
  const std::size_t n = wave.size();
  if (n == 0 || static_cast<long>(n) >= samples) return;
  wave.resize(static_cast<std::size_t>(samples));
  for (std::size_t i = n; i < wave.size(); ++i) wave[i] = wave[i % n];
}

}  // namespace soundnet::app
