// Checked reads of JSON numbers: nlohmann's get<int>() converts a real number or an integer out
// of range with a plain cast (undefined behaviour for 2e27), so fields that must be integers are
// read through json_integer, which names the file and the field instead.
#pragma once

#if !defined(SOUNDNET_INSIDE_SOUNDNET) && !defined(SOUNDNET_INSIDE_IO)
#error "include <soundnet/io.hpp> or <soundnet/soundnet.hpp> instead of soundnet/io/json.hpp"
#endif

#include "../core/abi.hpp"
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

#include "../core/error.hpp"

namespace soundnet {
SOUNDNET_ABI_BEGIN
namespace io {
namespace detail {

/// The integer `v` as T; an io_error naming `path` and `field` when it is not an integer (3.5,
/// "7", null) or lies outside T's range.
template <class T>
T json_integer(const nlohmann::json& v, const std::string& path, const std::string& field) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u <= static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return static_cast<T>(u);
  } else if (v.is_number_integer()) {
    const auto i = v.get<std::int64_t>();
    if constexpr (std::is_signed_v<T>) {
      if (i >= static_cast<std::int64_t>(std::numeric_limits<T>::min()) &&
          i <= static_cast<std::int64_t>(std::numeric_limits<T>::max()))
        return static_cast<T>(i);
    }
  } else {
    throw io_error(path, "'" + field + "' must be an integer, not " + v.dump());
  }
  throw io_error(path, "'" + field + "' is out of range: " + v.dump());
}

}  // namespace detail
}  // namespace io
SOUNDNET_ABI_END
}  // namespace soundnet
