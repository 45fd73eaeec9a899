// The training loader's speed: random crops (with their targets) per second from a dataset store
// whose shards are in the page cache, on one thread and through the background loader.
//   soundnet-bench-loader DATASET [--crop-seconds 20] [--seconds 5] [--batch 64]
#include <soundnet/app/loader.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: soundnet-bench-loader DATASET [--crop-seconds S] [--seconds S] [--batch N]\n");
    return 2;
  }
  double crop_seconds = 20, seconds = 5;
  long batch = 64;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--crop-seconds") crop_seconds = std::atof(argv[i + 1]);
    else if (a == "--seconds") seconds = std::atof(argv[i + 1]);
    else if (a == "--batch") batch = std::atol(argv[i + 1]);
  }
  const soundnet::data::store_reader store(argv[1]);
  std::vector<std::size_t> videos(store.size());
  for (std::size_t i = 0; i < videos.size(); ++i) videos[i] = i;
  const long crop = static_cast<long>(crop_seconds * store.layout().sample_rate), steps = 4;
  using clock = std::chrono::steady_clock;
  {  // warm the page cache
    soundnet::app::batch_loader warm(store, videos, batch, crop, steps, 1, true, 0, 1);
    for (long k = 0; k < 4; ++k) warm.make(k);
  }
  std::printf("# %zu videos, %.0f s crops, batches of %ld; crops per second (median of 3)\n", store.size(), crop_seconds, batch);
  for (int threads : {0, 1, 2}) {
    std::vector<double> rates;
    for (int round = 0; round < 3; ++round) {
      soundnet::app::batch_loader loader(store, videos, batch, crop, steps, 7 + round, true, threads, 8);
      const auto t0 = clock::now();
      long k = 0;
      while (std::chrono::duration<double>(clock::now() - t0).count() < seconds / 3) loader.recycle(loader.get(k++));
      rates.push_back(double(k * batch) / std::chrono::duration<double>(clock::now() - t0).count());
    }
    std::sort(rates.begin(), rates.end());
    std::printf("%s %.0f crops/s\n",
                threads == 0 ? "one thread, made in the caller:" : (std::to_string(threads) + " loader thread(s):").c_str(),
                rates[1]);
  }
  return 0;
}
