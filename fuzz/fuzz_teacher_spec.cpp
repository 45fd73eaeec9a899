// A teacher's JSON preprocessing spec on arbitrary bytes (the spec is read and checked; the
// ONNX model it names is not loaded).
#include <soundnet/core/error.hpp>
#include <soundnet/teachers/teacher.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = soundnet::fuzz::as_file("spec.json", data, size);
  try {
    (void)soundnet::teachers::spec::load(path);
  } catch (const soundnet::error&) {
  }
  return 0;
}
