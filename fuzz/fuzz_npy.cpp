// The .npy reader on arbitrary bytes: it returns an array or throws soundnet::error; anything
// else (a crash, a sanitizer report, an allocation beyond -malloc_limit_mb) is a finding.
#include <soundnet/io.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = soundnet::fuzz::as_file("input.npy", data, size);
  try {
    const auto a = soundnet::io::read_npy<float>(path);
    volatile float sink = a.size() ? a.data()[a.size() - 1] : 0.0f;
    (void)sink;
    (void)soundnet::io::read_npy<double>(path);
  } catch (const soundnet::error&) {
  }
  return 0;
}
