// The training loader's background threads (soundnet::app::batch_loader) on a store written
// here: batch k is the same whatever the thread count, the prefetch depth, the first batch
// asked for (a resume) or the timing; recycled memory does not leak between batches; a loader
// destroyed while its threads work stops cleanly. Built for ThreadSanitizer too (docs/reliability.md),
// so that the loader's synchronisation is checked without the cost of training.
#define BOOST_TEST_MODULE loader
#include <boost/test/unit_test.hpp>

#include <soundnet/app/loader.hpp>
#include <soundnet/data/store.hpp>

#include <cmath>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include <unistd.h>

namespace fs = std::filesystem;
using soundnet::app::batch_loader;
using soundnet::app::training_batch;

namespace {

struct fixture {
  std::string dir;
  std::vector<std::size_t> videos;
  fixture() {
    dir = (fs::temp_directory_path() / ("soundnet-test-loader-" + std::to_string(::getpid()))).string();
    fs::remove_all(dir);
    soundnet::data::store_layout layout;
    layout.frame_rate = 1.0;
    layout.teachers = {{"objects", 4, {}}, {"scenes", 3, {}}};
    soundnet::data::store_writer w(dir, layout);
    for (int v = 0; v < 6; ++v) {
      const std::size_t seconds = 2 + static_cast<std::size_t>(v % 3), samples = seconds * 22050 + 77 * v;
      std::vector<float> wave(samples);
      for (std::size_t i = 0; i < samples; ++i) wave[i] = std::round(100.0f * std::sin(0.01f * (v + 1) * float(i)) * 64) / 64;
      std::vector<float> frames;
      for (std::size_t f = 0; f < seconds + 1; ++f) {
        frames.push_back(float(f));
        for (int c = 0; c < 4; ++c) frames.push_back(c == (v + int(f)) % 4 ? 0.7f : 0.1f);
        for (int c = 0; c < 3; ++c) frames.push_back(c == v % 3 ? 0.5f : 0.25f);
      }
      w.append("video" + std::to_string(v), wave.data(), wave.size(), frames.data(), seconds + 1);
      videos.push_back(static_cast<std::size_t>(v));
    }
  }
  ~fixture() { fs::remove_all(dir); }
};

bool same(const training_batch& a, const training_batch& b) {
  return a.index == b.index && a.audio == b.audio && a.targets == b.targets;
}

constexpr long batch = 3, crop = 22050, steps = 2, count = 24;

}  // namespace

BOOST_FIXTURE_TEST_CASE(batches_do_not_depend_on_threads_prefetch_or_timing, fixture) {
  soundnet::data::store_reader store(dir);
  batch_loader reference(store, videos, batch, crop, steps, 9, true, 0, 1);
  std::vector<training_batch> expected;
  for (long k = 0; k < count; ++k) expected.push_back(reference.make(k));
  // every step's target is a distribution
  for (const auto& b : expected)
    for (std::size_t t = 0; t < b.targets.size(); ++t) {
      const long classes = t == 0 ? 4 : 3;
      for (long j = 0; j < batch; ++j)
        for (long s = 0; s < steps; ++s) {
          double sum = 0;
          for (long c = 0; c < classes; ++c) sum += b.targets[t][std::size_t((j * classes + c) * steps + s)];
          BOOST_TEST(std::abs(sum - 1.0) < 1e-5);
        }
    }
  for (int threads : {1, 2, 4})
    for (int prefetch : {1, 3, 8}) {
      BOOST_TEST_CONTEXT("threads " << threads << ", prefetch " << prefetch) {
        batch_loader loader(store, videos, batch, crop, steps, 9, true, threads, prefetch);
        for (long k = 0; k < count; ++k) {
          auto b = loader.get(k);
          BOOST_TEST(same(b, expected[std::size_t(k)]));
          loader.recycle(std::move(b));
        }
      }
    }
}

BOOST_FIXTURE_TEST_CASE(a_resumed_loader_continues_with_the_same_batches, fixture) {
  soundnet::data::store_reader store(dir);
  batch_loader reference(store, videos, batch, crop, steps, 4, true, 0, 1);
  batch_loader resumed(store, videos, batch, crop, steps, 4, true, 3, 4);
  for (long k = 11; k < 20; ++k) {
    auto b = resumed.get(k);
    BOOST_TEST(same(b, reference.make(k)));
    resumed.recycle(std::move(b));
  }
}

BOOST_FIXTURE_TEST_CASE(a_loader_destroyed_while_working_stops_cleanly, fixture) {
  soundnet::data::store_reader store(dir);
  for (int round = 0; round < 5; ++round) {
    batch_loader loader(store, videos, batch, crop, steps, 1, true, 3, 6);
    auto b = loader.get(0);
    BOOST_TEST(b.index == 0);
  }  // the threads are still making batches 1..6 when each loader goes
}
