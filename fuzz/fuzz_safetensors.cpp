// safetensors weights and checkpoints on arbitrary bytes: the reader, the header-only metadata
// reader, loading into a model and restoring a checkpoint (weights and Adam state).
#include <soundnet/soundnet.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using net = soundnet::model<soundnet::soundnet5<1000, 0>>;
  static net model(1);
  static soundnet::adam opt(model);
  const auto path = soundnet::fuzz::as_file("input.safetensors", data, size);
  try {
    (void)soundnet::io::read_safetensors_metadata(path);
  } catch (const soundnet::error&) {
  }
  try {
    const auto file = soundnet::io::read_safetensors(path);
    for (const auto& [name, e] : file.tensors)
      if (e.dtype == "F32" || e.dtype == "F64") (void)file.copy_to<float>(name, nullptr);
  } catch (const soundnet::error&) {
    return 0;
  }
  try {
    soundnet::io::load_weights(model, path);
  } catch (const soundnet::error&) {
  }
  try {
    soundnet::io::load_checkpoint(model, opt, path);
  } catch (const soundnet::error&) {
  }
  return 0;
}
