// soundnet: SoundNet (Aytar, Vondrick, Torralba, NeurIPS 2016) as a header-only C++ library.
#pragma once

#define SOUNDNET_VERSION_MAJOR 0
#define SOUNDNET_VERSION_MINOR 1
#define SOUNDNET_VERSION_PATCH 0

namespace soundnet {
/// The library version as "major.minor.patch".
inline constexpr const char* version_string = "0.1.0";
}  // namespace soundnet
