// .npy files: a strict reader (every malformed, truncated or unsupported file is an io_error
// naming the file and the problem) and a writer built on xtensor's xt::dump_npy.
#pragma once

#if !defined(SOUNDNET_INSIDE_SOUNDNET) && !defined(SOUNDNET_INSIDE_IO)
#error "include <soundnet/io.hpp> or <soundnet/soundnet.hpp> instead of soundnet/io/npy.hpp"
#endif

#include "../core/abi.hpp"
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xnpy.hpp>

#include "../core/error.hpp"
#include "files.hpp"

namespace soundnet {
SOUNDNET_ABI_BEGIN
namespace io {

namespace detail {

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

/// Reads a .npy array of float32 or float64 (little-endian; C or Fortran order) as T, in C order.
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
  const bool fortran_order = fortran.find("True") != std::string::npos;
  if (!fortran_order && fortran.find("False") == std::string::npos)
    throw io_error(path, "malformed .npy header: fortran_order is '" + fortran + "'");
  std::size_t word = 0;
  if (descr == "<f4" || descr == "=f4" || descr == "f4") word = 4;
  else if (descr == "<f8" || descr == "=f8" || descr == "f8") word = 8;
  else throw io_error(path, "dtype '" + descr + "' is not supported; expected float32 ('<f4') or float64 ('<f8')");

  // Every dimension is plain digits, and the product of the non-zero ones may not exceed the
  // bytes the file holds (or 2^31, for an empty array): a header cannot make the reader
  // allocate more than the file justifies, nor overflow a size or a stride.
  const std::size_t data_offset = offset + header_len;
  const std::size_t available = bytes.size() - data_offset;
  const std::size_t limit = std::max<std::size_t>(available, std::size_t(1) << 31);
  std::vector<std::size_t> shape;
  std::size_t count = 1, nonzero = 1;
  for (std::size_t p = 1; p < shape_text.size();) {
    while (p < shape_text.size() && (shape_text[p] == ' ' || shape_text[p] == ',')) ++p;
    if (p >= shape_text.size() || shape_text[p] == ')') break;
    if (shape_text[p] < '0' || shape_text[p] > '9') throw io_error(path, "malformed .npy shape " + shape_text);
    std::size_t dim = 0;
    bool too_big = false;
    for (; p < shape_text.size() && shape_text[p] >= '0' && shape_text[p] <= '9'; ++p) {
      if (dim > limit / 10) too_big = true;
      else dim = dim * 10 + static_cast<std::size_t>(shape_text[p] - '0');
    }
    if (too_big || (dim > 0 && nonzero > limit / dim))
      throw io_error(path, "truncated or malformed: the .npy shape " + shape_text + " needs more data than the file's " +
                               std::to_string(available) + " bytes");
    if (dim > 0) nonzero *= dim;
    shape.push_back(dim);
    count *= dim;
  }
  const std::size_t need = count * word;
  if (available < need)
    throw io_error(path, "truncated: the header announces " + std::to_string(need) + " bytes of data, the file has " +
                             std::to_string(available));
  // Fortran order: the data of the reversed shape in C order, transposed below.
  xt::xarray<T> out = xt::xarray<T>::from_shape(fortran_order ? std::vector<std::size_t>(shape.rbegin(), shape.rend()) : shape);
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
  if (fortran_order && shape.size() > 1) return xt::xarray<T>(xt::transpose(out));
  return out;
}

/// Writes an xtensor expression as .npy (through a temporary file, then renamed).
template <class E>
void write_npy(const std::string& path, const xt::xexpression<E>& array) {
  detail::write_file(path, xt::dump_npy(array));
}

/// Writes a float32 .npy file whose last axis grows as blocks arrive, with memory bounded by
/// the block: shape (steps,) for channels == 0, else (channels, steps) in Fortran order (step
/// by step on disk; numpy.load and read_npy give the usual (channels, steps) array). The data
/// goes to PATH.tmp, which close() completes with the final shape and renames to PATH; a
/// writer destroyed without close() removes it, so an interrupted run leaves no partial file.
class npy_stream_writer {
 public:
  npy_stream_writer(std::string path, long channels) : path_(std::move(path)), channels_(channels) {
    if (channels_ < 0) throw io_error(path_, "npy_stream_writer: negative channel count");
    out_.open(tmp_path(), std::ios::binary | std::ios::trunc);
    if (!out_) throw io_error(path_, "cannot open file for writing");
    out_ << header(0);
  }
  npy_stream_writer(const npy_stream_writer&) = delete;
  npy_stream_writer& operator=(const npy_stream_writer&) = delete;
  ~npy_stream_writer() {
    if (out_.is_open()) {
      out_.close();
      std::remove(tmp_path().c_str());
    }
  }

  const std::string& path() const { return path_; }
  long steps() const { return steps_; }

  /// Appends `steps` steps: `block` holds (channels, steps) in C order (for channels == 0,
  /// `steps` values).
  template <class T>
  void append(const T* block, long steps) {
    if (!out_.is_open()) throw io_error(path_, "npy_stream_writer: append after close");
    const long c = std::max(channels_, 1L);
    buffer_.resize(static_cast<std::size_t>(c * steps));
    for (long t = 0; t < steps; ++t)  // (channels, steps) to step-major
      for (long ch = 0; ch < c; ++ch) buffer_[t * c + ch] = static_cast<float>(block[ch * steps + t]);
    out_.write(reinterpret_cast<const char*>(buffer_.data()), static_cast<std::streamsize>(buffer_.size() * 4));
    if (!out_) throw io_error(path_, "write error (disk full?)");
    steps_ += steps;
  }

  /// Writes the final shape and renames the file into place.
  void close() {
    if (!out_.is_open()) return;
    out_.seekp(0);
    out_ << header(steps_);
    out_.flush();
    const bool ok = static_cast<bool>(out_);
    out_.close();
    if (!ok) {
      std::remove(tmp_path().c_str());
      throw io_error(path_, std::string("write error (disk full?): ") + std::strerror(errno));
    }
    detail::commit_file(tmp_path(), path_);
  }

 private:
  std::string tmp_path() const { return path_ + ".tmp"; }

  // Version 1.0 header padded to a fixed 128 bytes, so that the final shape fits in place.
  std::string header(long steps) const {
    std::string dict = channels_ == 0 ? "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(steps) + ",), }"
                                      : "{'descr': '<f4', 'fortran_order': True, 'shape': (" +
                                            std::to_string(channels_) + ", " + std::to_string(steps) + "), }";
    const std::size_t total = 128, len = total - 10;
    dict.resize(len - 1, ' ');
    dict += '\n';
    std::string h = "\x93NUMPY";
    h += '\x01';
    h += '\x00';
    h += static_cast<char>(len & 0xff);
    h += static_cast<char>(len >> 8);
    return h + dict;
  }

  std::string path_;
  long channels_;
  long steps_ = 0;
  std::ofstream out_;
  std::vector<float> buffer_;
};

}  // namespace io
SOUNDNET_ABI_END
}  // namespace soundnet
