// Shared by the fuzz targets: the readers under test take paths, so each input is written to a
// file of this process first (in $TMPDIR; one per target and process).
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace soundnet::fuzz {

inline std::string scratch(const std::string& name) {
  static const auto dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("soundnet-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return (dir / name).string();
}

inline void write(const std::string& path, const std::uint8_t* data, std::size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

inline std::string as_file(const std::string& name, const std::uint8_t* data, std::size_t size) {
  const auto path = scratch(name);
  write(path, data, size);
  return path;
}

}  // namespace soundnet::fuzz
