// The CPU device: host memory, arithmetic with Eigen and OpenMP (backend/cpu/ops.hpp).
#pragma once

#ifndef SOUNDNET_INSIDE_SOUNDNET
#error "include <soundnet/soundnet.hpp> instead of soundnet/backend/cpu/device.hpp"
#endif

#include "../../core/abi.hpp"
#include <Eigen/Core>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../device.hpp"

namespace soundnet {
SOUNDNET_ABI_BEGIN

/// Sets the number of CPU threads used by the library. The CPU backend parallelises over its
/// own fixed blocks of work (so that results do not depend on the thread count) and runs
/// Eigen's products on one thread each: this also sets Eigen's thread count to 1. Without
/// OpenMP the library runs on one thread and this has no effect.
inline void set_num_threads(int threads) {
#ifdef _OPENMP
  if (threads > 0) omp_set_num_threads(threads);
#endif
  (void)threads;
  Eigen::setNbThreads(1);
}

/// The number of CPU threads the library uses.
inline int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

namespace detail {

/// Host memory aligned to 64 bytes (a cache line, an AVX-512 register) that keeps the device
/// buffer contract: size / data / resize. Growing past the capacity frees the old storage
/// first (the contents are not kept), so that old and new never coexist.
template <class T>
class host_buffer {
 public:
  static constexpr std::size_t alignment = 64;

  host_buffer() = default;
  host_buffer(const host_buffer&) = delete;
  host_buffer& operator=(const host_buffer&) = delete;
  host_buffer(host_buffer&& o) noexcept { swap(o); }
  host_buffer& operator=(host_buffer&& o) noexcept {
    host_buffer(std::move(o)).swap(*this);
    return *this;
  }
  ~host_buffer() { release(); }

  std::size_t size() const { return size_; }
  T* data() { return data_; }
  const T* data() const { return data_; }

  void resize(std::size_t n) {
    if (n > capacity_) {
      release();
      const std::size_t bytes = (n * sizeof(T) + alignment - 1) / alignment * alignment;
      data_ = static_cast<T*>(::operator new(bytes, std::align_val_t(alignment)));
      capacity_ = n;
    }
    size_ = n;
  }

 private:
  void release() {
    if (data_) ::operator delete(data_, std::align_val_t(alignment));
    data_ = nullptr;
    size_ = capacity_ = 0;
  }
  void swap(host_buffer& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
  }

  T* data_ = nullptr;
  std::size_t size_ = 0, capacity_ = 0;
};

}  // namespace detail

/// The CPU device.
struct cpu {
  static constexpr const char* name = "cpu";

  template <class T>
  using buffer = detail::host_buffer<T>;

  /// The OpenMP thread number inside a parallel region (0 outside, or without OpenMP).
  static int thread_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
  }

  /// What every CPU op receives: scratch memory that grows to the largest request and is then
  /// reused (a steady stream of same-shaped calls allocates nothing). Slots are independent
  /// regions, so an op may hold several at once; each OpenMP thread has its own as well.
  class context {
   public:
    /// Slots of the shared scratch.
    enum slot : int { main_slot = 0, side_slot = 1, small_slot = 2, slot_count = 3 };

    context() { Eigen::setNbThreads(1); }  // see set_num_threads

    /// At least `count` values of U in shared slot `s`; the contents are unspecified.
    template <class U>
    U* scratch(slot s, std::size_t count) {
      return grow<U>(shared_[s], count);
    }

    /// At least `count` values of U for OpenMP thread `thread`; call prepare_threads first.
    template <class U>
    U* thread_scratch(int thread, std::size_t count) {
      return grow<U>(per_thread_[static_cast<std::size_t>(thread)], count);
    }

    /// Makes room for `threads` per-thread regions (outside a parallel region).
    void prepare_threads(int threads) {
      if (per_thread_.size() < static_cast<std::size_t>(threads)) per_thread_.resize(static_cast<std::size_t>(threads));
    }

    /// The threads the CPU ops use.
    int threads() const { return num_threads(); }

    /// Synchronised batch norm: training-mode batch norm sums its statistics (and, backward,
    /// their gradients) over the processes through `s`; null (the default) is a local batch.
    void set_batch_norm_sync(batch_norm_sync* s) { sync_ = s; }
    batch_norm_sync* batch_norm_sync_with() const { return sync_; }

   private:
    using bytes = detail::host_buffer<std::max_align_t>;
    template <class U>
    static U* grow(bytes& b, std::size_t count) {
      const std::size_t units = (count * sizeof(U) + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t);
      if (b.size() < units) b.resize(units);
      return reinterpret_cast<U*>(b.data());
    }
    bytes shared_[slot_count];
    std::vector<bytes> per_thread_;
    batch_norm_sync* sync_ = nullptr;
  };
};

SOUNDNET_ABI_END
}  // namespace soundnet
