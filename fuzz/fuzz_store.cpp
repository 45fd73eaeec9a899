// The dataset store's files on arbitrary bytes. An input is five parts, each preceded by its
// length (4 bytes, little-endian): dataset.json, index.bin, videos.tsv, shard-00000.audio and
// shard-00000.frames. The store is opened, verified, read at every record, its training crops
// and targets made, and reopened for appending (the writer's recovery).
#include <soundnet/app/loader.hpp>
#include <soundnet/core/error.hpp>
#include <soundnet/data/store.hpp>

#include "fuzz_input.hpp"

#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const char* names[] = {"dataset.json", "index.bin", "videos.tsv", "shard-00000.audio", "shard-00000.frames"};
  const auto dir = soundnet::fuzz::scratch("store");
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::size_t at = 0;
  for (const char* name : names) {
    std::uint32_t n = 0;
    if (at + 4 <= size) {
      n = std::uint32_t(data[at]) | std::uint32_t(data[at + 1]) << 8 | std::uint32_t(data[at + 2]) << 16 |
          std::uint32_t(data[at + 3]) << 24;
      at += 4;
    }
    n = static_cast<std::uint32_t>(std::min<std::size_t>(n, size - at));
    soundnet::fuzz::write(dir + "/" + name, data + at, n);
    at += n;
  }
  try {
    soundnet::data::store_reader store(dir);
    (void)store.verify();
    std::vector<float> audio(256);
    std::vector<std::vector<float>> targets;
    for (std::size_t i = 0; i < std::min<std::size_t>(store.size(), 16); ++i) {
      store.read_audio(i, 3, 256, audio.data());
      (void)store.frames(i);
      soundnet::app::crop_targets(store, i, 0, 256, 2, targets);
    }
    (void)store.validation_set(2);
  } catch (const soundnet::error&) {
  }
  try {
    soundnet::data::store_layout layout;
    layout.teachers = {{"objects", 3, {}}};
    soundnet::data::store_writer writer(dir, layout);
    (void)writer.size();
  } catch (const soundnet::error&) {
  }
  return 0;
}
