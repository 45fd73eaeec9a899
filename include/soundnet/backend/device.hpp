// Devices are types. A model is compiled for one device; the layers call ops<Device, T>,
// whose specialisations (backend/cpu/ops.hpp, ...) are twins with identical signatures.
#pragma once

#ifndef SOUNDNET_INSIDE_SOUNDNET
#error "include <soundnet/soundnet.hpp> instead of soundnet/backend/device.hpp"
#endif

#include <Eigen/Core>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace soundnet {

/// The CPU device: buffers in host memory, arithmetic with Eigen and OpenMP.
struct cpu {
  static constexpr const char* name = "cpu";
  template <class T>
  using buffer = std::vector<T, Eigen::aligned_allocator<T>>;
};

/// Operation table of a device. Only specialisations exist; asking for a device without one
/// fails to compile.
template <class Device, class T>
struct ops {
  static_assert(sizeof(Device) == 0, "SOUNDNET_NO_BACKEND_FOR_THIS_DEVICE_TYPE");
};

/// Sets the number of CPU threads used by the library (OpenMP and Eigen's GEMM).
/// Without OpenMP the library runs on one thread and this has no effect.
inline void set_num_threads(int threads) {
#ifdef _OPENMP
  if (threads > 0) omp_set_num_threads(threads);
#endif
  Eigen::setNbThreads(threads > 0 ? threads : 1);
}

/// The number of CPU threads the library uses.
inline int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace soundnet
