// A seeded, platform-independent normal generator (std::normal_distribution is not: its
// algorithm is implementation-defined, so the same seed would give other weights elsewhere).
#pragma once

#include "abi.hpp"
#include <cmath>
#include <cstdint>

namespace soundnet {
SOUNDNET_ABI_BEGIN

/// splitmix64 stream + Box-Muller. The same seed gives the same numbers on every platform.
class normal_generator {
 public:
  explicit normal_generator(std::uint64_t seed) : state_(seed) {}

  /// A uniform double in (0, 1).
  double uniform() {
    return (static_cast<double>(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  }

  /// A normal draw with the given mean and standard deviation.
  double operator()(double mean, double stddev) {
    if (has_spare_) {
      has_spare_ = false;
      return mean + stddev * spare_;
    }
    const double u1 = uniform(), u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double two_pi = 6.283185307179586476925286766559;
    spare_ = r * std::sin(two_pi * u2);
    has_spare_ = true;
    return mean + stddev * r * std::cos(two_pi * u2);
  }

  /// The next raw 64-bit value.
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

 private:
  std::uint64_t state_;
  double spare_ = 0;
  bool has_spare_ = false;
};

SOUNDNET_ABI_END
}  // namespace soundnet
