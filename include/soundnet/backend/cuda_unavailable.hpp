// soundnet::cuda in a build without the CUDA device (the target soundnet::cuda not linked):
// the name exists, so that a program can ask at compile time (`if constexpr
// (soundnet::cuda::compiled_in)`) or at run time (device_count() is 0, unavailable_reason()
// says why), but model<Net, T, soundnet::cuda> fails to compile with
// SOUNDNET_CUDA_DEVICE_IS_NOT_COMPILED_IN.
#pragma once

#ifndef SOUNDNET_INSIDE_SOUNDNET
#error "include <soundnet/soundnet.hpp> instead of soundnet/backend/cuda_unavailable.hpp"
#endif

#include "../core/abi.hpp"
#include <cstddef>
#include <string>

namespace soundnet {
SOUNDNET_ABI_BEGIN

struct cuda {
  static constexpr const char* name = "cuda";
  static constexpr bool compiled_in = false;
  static int device_count() { return 0; }
  static std::string unavailable_reason() {
    return "this program was built without soundnet's CUDA device (the CMake target soundnet::cuda: "
           "configure with nvcc present, or -DSOUNDNET_WITH_CUDA=ON)";
  }
  template <class U>
  struct buffer {  // never allocates: only so that the types that name it still parse
    std::size_t size() const { return 0; }
    U* data() { return nullptr; }
    void resize(std::size_t) {}
  };
  struct context {};
};

SOUNDNET_ABI_END
}  // namespace soundnet
