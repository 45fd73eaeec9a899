// The CSV readers of outside input: a dataset's metadata CSV (soundnet-evaluate), the training
// manifest (soundnet-train; its rows name .npy files next to it) and a labels file. The first
// byte chooses the reader.
#include <soundnet/soundnet.hpp>
#include <soundnet/app/labels.hpp>
#include <soundnet/app/manifest.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int which = data[0] % 3;
  const auto path = soundnet::fuzz::as_file("input.csv", data + 1, size - 1);
  try {
    if (which == 0) {
      (void)soundnet::app::read_meta(path);
    } else if (which == 1) {
      using model_t = soundnet::model<soundnet::soundnet5<>>;
      soundnet::app::manifest_rules rules{"soundnet5", 1000, 401, model_t::min_input_length(), 0,
                                          [](long n) { return model_t::output_length(n); }};
      (void)soundnet::app::read_training_manifest(path, rules);
    } else {
      (void)soundnet::app::read_labels(path, 5);
    }
  } catch (const soundnet::error&) {
  }
  return 0;
}
