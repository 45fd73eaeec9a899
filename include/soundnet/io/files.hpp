// Whole-file reads, crash-safe whole-file writes and CRC-32, shared by the .npy and
// safetensors code (and by soundnet::data's store).
#pragma once

#if !defined(SOUNDNET_INSIDE_SOUNDNET) && !defined(SOUNDNET_INSIDE_IO)
#error "include <soundnet/io.hpp> or <soundnet/soundnet.hpp> instead of soundnet/io/files.hpp"
#endif

#include "../core/abi.hpp"
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/error.hpp"

namespace soundnet {
SOUNDNET_ABI_BEGIN
namespace io {
namespace detail {

/// The whole of a file. A directory, a missing or unreadable file is an io_error naming it.
inline std::string read_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) throw io_error(path, "is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(path, "cannot open file for reading");
  // A regular file is read into a buffer of its exact size (no growth, no transient copy).
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size >= 0) {
    std::string bytes(static_cast<std::size_t>(size), '\0');
    in.seekg(0);
    if (in.read(&bytes[0], size) && in.gcount() == size) return bytes;
    if (in.bad()) throw io_error(path, "read error");
  }
  in.clear();
  in.seekg(0);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw io_error(path, "read error");
  return bytes;
}

/// The folder part of a path ("." for a bare name).
inline std::string folder_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

/// Renames the flushed file `tmp` over `path` and syncs the folder, so that the rename itself
/// survives a power cut. An io_error naming `path` on failure; `tmp` is then removed.
inline void rename_into_place(const std::string& tmp, const std::string& path) {
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp.c_str());
    throw io_error(path, "cannot replace the file: " + reason);
  }
  const int dir = ::open(folder_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {  // best effort: some file systems cannot sync a folder
    (void)::fsync(dir);
    ::close(dir);
  }
}

/// Writes `bytes` to `path` so that a crash, a kill or a full disk at any moment leaves
/// either the old file or the new one, never a mix: the bytes go to PATH.tmp, which is
/// flushed to the disk (fsync), renamed over PATH, and the folder is synced so the rename
/// itself survives a power cut. Any failure is an io_error naming PATH and the reason
/// (e.g. "No space left on device"); PATH.tmp is removed and PATH is left as it was.
inline void write_file(const std::string& path, const void* bytes, std::size_t size) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw io_error(path, std::string("cannot open for writing: ") + std::strerror(errno));
  auto fail = [&](const char* what) {
    const std::string reason = std::strerror(errno);
    ::close(fd);
    std::remove(tmp.c_str());
    throw io_error(path, std::string(what) + ": " + reason + "; the previous file, if any, is unchanged");
  };
  const char* p = static_cast<const char*>(bytes);
  std::size_t left = size;
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write error");
    }
    if (n == 0) {
      errno = ENOSPC;
      fail("write error");
    }
    p += n, left -= static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) fail("cannot flush to disk");
  if (::close(fd) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp.c_str());
    throw io_error(path, "write error: " + reason + "; the previous file, if any, is unchanged");
  }
  rename_into_place(tmp, path);
}

/// Completes a file written at `tmp` (already closed): flushes it to the disk, renames it to
/// `path` and syncs the folder. An io_error naming `path` on failure; `tmp` is then removed.
inline void commit_file(const std::string& tmp, const std::string& path) {
  const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const std::string reason = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    std::remove(tmp.c_str());
    throw io_error(path, "cannot flush to disk: " + reason);
  }
  ::close(fd);
  rename_into_place(tmp, path);
}

inline void write_file(const std::string& path, const std::string& bytes) { write_file(path, bytes.data(), bytes.size()); }

/// The file `name` that `owner` (a spec, a manifest) names, relative to `folder`. Unless
/// `allow_outside`, the name must stay in the folder or below: an absolute path or a ".."
/// component is an io_error naming the owner, so that a file from elsewhere cannot make a
/// program read outside the paths it was given.
inline std::string inside_folder(const std::string& folder, const std::string& name, const std::string& owner,
                                 bool allow_outside) {
  if (name.empty()) throw io_error(owner, "names an empty path");
  bool escapes = name[0] == '/';
  for (std::size_t begin = 0; begin <= name.size() && !escapes;) {
    const auto end = std::min(name.find('/', begin), name.size());
    escapes = name.compare(begin, end - begin, "..") == 0;
    begin = end + 1;
  }
  if (escapes && !allow_outside)
    throw io_error(owner, "names '" + name + "', outside its folder; only files in its folder or below are read "
                          "(--allow-outside-paths allows others)");
  if (name[0] == '/' || folder.empty()) return name;
  return folder.back() == '/' ? folder + name : folder + "/" + name;
}

/// CRC-32 (IEEE 802.3 polynomial; zlib's crc32 and Python's zlib.crc32), slicing by 8.
/// `crc` continues an earlier value: crc32(b, n2, crc32(a, n1)) is the CRC of a then b.
inline std::uint32_t crc32(const void* data, std::size_t bytes, std::uint32_t crc = 0) {
  static const auto tables = [] {
    std::array<std::array<std::uint32_t, 256>, 8> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (std::uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    return t;
  }();
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  while (bytes >= 8) {
    const std::uint32_t lo = crc ^ (std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
                                    std::uint32_t(p[3]) << 24);
    crc = tables[7][lo & 0xFF] ^ tables[6][(lo >> 8) & 0xFF] ^ tables[5][(lo >> 16) & 0xFF] ^ tables[4][lo >> 24] ^
          tables[3][p[4]] ^ tables[2][p[5]] ^ tables[1][p[6]] ^ tables[0][p[7]];
    p += 8, bytes -= 8;
  }
  while (bytes-- > 0) crc = tables[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

}  // namespace detail
}  // namespace io
SOUNDNET_ABI_END
}  // namespace soundnet
