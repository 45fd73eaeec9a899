// .npy files: a strict reader (every malformed, truncated or unsupported file is an io_error
// naming the file and the problem) and a writer built on xtensor's xt::dump_npy.
#pragma once

#ifndef SOUNDNET_INSIDE_SOUNDNET
#error "include <soundnet/soundnet.hpp> instead of soundnet/io/npy.hpp"
#endif

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xnpy.hpp>

#include "../core/error.hpp"

namespace soundnet::io {

namespace detail {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(path, "cannot open file for reading");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw io_error(path, "read error");
  return bytes;
}

inline void write_file(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw io_error(path, "cannot open file for writing");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) throw io_error(path, "write error (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw io_error(path, "cannot replace file");
  }
}

// Value of 'key' in a numpy header dict: the text after "'key':" up to the matching end.
inline std::string header_field(const std::string& header, const std::string& key, const std::string& path) {
  const auto k = header.find("'" + key + "'");
  if (k == std::string::npos) throw io_error(path, "malformed .npy header: no '" + key + "'");
  auto p = header.find(':', k);
  if (p == std::string::npos) throw io_error(path, "malformed .npy header near '" + key + "'");
  ++p;
  while (p < header.size() && header[p] == ' ') ++p;
  if (p >= header.size()) throw io_error(path, "malformed .npy header near '" + key + "'");
  if (header[p] == '(') {
    const auto e = header.find(')', p);
    if (e == std::string::npos) throw io_error(path, "malformed .npy header: unterminated shape");
    return header.substr(p, e - p + 1);
  }
  if (header[p] == '\'') {
    const auto e = header.find('\'', p + 1);
    if (e == std::string::npos) throw io_error(path, "malformed .npy header: unterminated string");
    return header.substr(p + 1, e - p - 1);
  }
  auto e = header.find_first_of(",}", p);
  return header.substr(p, e == std::string::npos ? std::string::npos : e - p);
}

}  // namespace detail

/// Reads a C-order .npy array of float32 or float64 (little-endian) as T.
/// Throws io_error for a missing, truncated or malformed file or another dtype.
template <class T>
xt::xarray<T> read_npy(const std::string& path) {
  const std::string bytes = detail::read_file(path);
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0)
    throw io_error(path, "not a .npy file (bad magic bytes)");
  const int major = static_cast<unsigned char>(bytes[6]);
  std::size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw io_error(path, "truncated .npy header");
    for (int i = 0; i < 4; ++i) header_len |= static_cast<std::size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    offset = 12;
  } else {
    throw io_error(path, "unsupported .npy version " + std::to_string(major));
  }
  if (offset + header_len > bytes.size()) throw io_error(path, "truncated .npy header");
  const std::string header = bytes.substr(offset, header_len);
  const std::string descr = detail::header_field(header, "descr", path);
  const std::string fortran = detail::header_field(header, "fortran_order", path);
  const std::string shape_text = detail::header_field(header, "shape", path);
  if (fortran.find("True") != std::string::npos)
    throw io_error(path, "Fortran-order arrays are not supported; save with numpy.ascontiguousarray");
  std::size_t word = 0;
  if (descr == "<f4" || descr == "=f4" || descr == "f4") word = 4;
  else if (descr == "<f8" || descr == "=f8" || descr == "f8") word = 8;
  else throw io_error(path, "dtype '" + descr + "' is not supported; expected float32 ('<f4') or float64 ('<f8')");

  std::vector<std::size_t> shape;
  std::size_t count = 1;
  for (std::size_t p = 1; p < shape_text.size();) {
    while (p < shape_text.size() && (shape_text[p] == ' ' || shape_text[p] == ',')) ++p;
    if (p >= shape_text.size() || shape_text[p] == ')') break;
    std::size_t used = 0;
    unsigned long long dim = 0;
    try {
      dim = std::stoull(shape_text.substr(p), &used);
    } catch (const std::exception&) {
      throw io_error(path, "malformed .npy shape " + shape_text);
    }
    shape.push_back(static_cast<std::size_t>(dim));
    count *= static_cast<std::size_t>(dim);
    p += used;
  }
  const std::size_t data_offset = offset + header_len;
  const std::size_t need = count * word;
  if (bytes.size() - data_offset < need)
    throw io_error(path, "truncated: the header announces " + std::to_string(need) + " bytes of data, the file has " +
                             std::to_string(bytes.size() - data_offset));
  xt::xarray<T> out = xt::xarray<T>::from_shape(shape);
  const char* src = bytes.data() + data_offset;
  for (std::size_t i = 0; i < count; ++i) {
    if (word == 4) {
      float f;
      std::memcpy(&f, src + 4 * i, 4);
      out.data()[i] = static_cast<T>(f);
    } else {
      double d;
      std::memcpy(&d, src + 8 * i, 8);
      out.data()[i] = static_cast<T>(d);
    }
  }
  return out;
}

/// Writes an xtensor expression as .npy (through a temporary file, then renamed).
template <class E>
void write_npy(const std::string& path, const xt::xexpression<E>& array) {
  detail::write_file(path, xt::dump_npy(array));
}

}  // namespace soundnet::io
