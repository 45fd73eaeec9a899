// safetensors files: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}, "__metadata__": {string: string}}, then the data.
#pragma once

#if !defined(SOUNDNET_INSIDE_SOUNDNET) && !defined(SOUNDNET_INSIDE_IO)
#error "include <soundnet/io.hpp> or <soundnet/soundnet.hpp> instead of soundnet/io/safetensors.hpp"
#endif

#include "../core/abi.hpp"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "npy.hpp"

namespace soundnet {
SOUNDNET_ABI_BEGIN
namespace io {

/// The metadata key under which write_safetensors records the CRC-32 of the data section
/// (8 lowercase hex digits); read_safetensors verifies it when present.
inline constexpr const char* crc_key = "soundnet_data_crc32";

namespace detail {
inline std::string crc_text(std::uint32_t crc) {
  char text[9];
  std::snprintf(text, sizeof text, "%08x", static_cast<unsigned>(crc));
  return text;
}
}  // namespace detail

struct safetensors_entry {
  std::string dtype;                // "F32", "F64", "I64", ...
  std::vector<std::size_t> shape;
  std::size_t begin = 0, end = 0;   // byte range in the data section
};

/// A whole safetensors file in memory, validated on reading.
struct safetensors_file {
  std::string path;
  std::map<std::string, std::string> metadata;
  std::map<std::string, safetensors_entry> tensors;
  std::string data;  // the data section

  /// The tensor `name` converted to T; requires dtype F32 or F64.
  template <class T>
  std::vector<T> values(const std::string& name) const {
    const auto it = tensors.find(name);
    if (it == tensors.end()) throw io_error(path, "no tensor named '" + name + "'");
    const auto& e = it->second;
    const std::size_t count = (e.end - e.begin) / dtype_size(e.dtype);
    std::vector<T> out(count);
    const char* src = data.data() + e.begin;
    for (std::size_t i = 0; i < count; ++i) {
      if (e.dtype == "F32") {
        float f;
        std::memcpy(&f, src + 4 * i, 4);
        out[i] = static_cast<T>(f);
      } else if (e.dtype == "F64") {
        double d;
        std::memcpy(&d, src + 8 * i, 8);
        out[i] = static_cast<T>(d);
      } else {
        throw io_error(path, "tensor '" + name + "' has dtype " + e.dtype + "; expected F32");
      }
    }
    return out;
  }

  /// Converts the F32 or F64 tensor `name` to T into dst (size: its element count) without
  /// an intermediate copy; returns the index of the first non-finite element, or -1.
  template <class T>
  long copy_to(const std::string& name, T* dst) const {
    const auto& e = tensors.at(name);
    const std::size_t word = dtype_size(e.dtype);
    if (e.dtype != "F32" && e.dtype != "F64") throw io_error(path, "tensor '" + name + "' has dtype " + e.dtype + "; expected F32");
    const std::size_t count = (e.end - e.begin) / word;
    const char* src = data.data() + e.begin;
    long bad = -1;
    for (std::size_t i = 0; i < count; ++i) {
      double v;
      if (word == 4) {
        float f;
        std::memcpy(&f, src + 4 * i, 4);
        v = f;
      } else {
        std::memcpy(&v, src + 8 * i, 8);
      }
      if (bad < 0 && !std::isfinite(v)) bad = static_cast<long>(i);
      if (dst) dst[i] = static_cast<T>(v);
    }
    return bad;
  }

  static std::size_t dtype_size(const std::string& dtype) {
    static const std::map<std::string, std::size_t> sizes = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
        {"I8", 1},  {"U8", 1},  {"U16", 2}, {"U32", 4},  {"U64", 8}, {"BOOL", 1}};
    const auto it = sizes.find(dtype);
    return it == sizes.end() ? 0 : it->second;
  }
};

/// Reads and validates a safetensors file. Throws io_error naming the file for a missing,
/// truncated or malformed file (bad header, unknown dtype, offsets out of range or not
/// matching the shape).
inline safetensors_file read_safetensors(const std::string& path) {
  std::string bytes = detail::read_file(path);
  if (bytes.size() < 8) throw io_error(path, "not a safetensors file (shorter than its 8-byte header length)");
  std::uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  if (header_len > bytes.size() - 8)
    throw io_error(path, "truncated or not a safetensors file: header of " + std::to_string(header_len) +
                             " bytes announced, " + std::to_string(bytes.size() - 8) + " present");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(header_len));
  } catch (const nlohmann::json::exception& e) {
    throw io_error(path, std::string("malformed safetensors header: ") + e.what());
  }
  if (!header.is_object()) throw io_error(path, "malformed safetensors header: not a JSON object");

  safetensors_file file;
  file.path = path;
  file.data = std::move(bytes);  // the tensor bytes, moved down in place: no second copy
  file.data.erase(0, 8 + header_len);
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      if (!it->is_object()) throw io_error(path, "malformed safetensors header: __metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) throw io_error(path, "metadata value '" + m.key() + "' is not a string");
        file.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const auto& v = *it;
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets") ||
        !v["dtype"].is_string() || !v["shape"].is_array() || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2)
      throw io_error(path, "malformed safetensors entry '" + name + "'");
    safetensors_entry e;
    e.dtype = v["dtype"].get<std::string>();
    const std::size_t word = safetensors_file::dtype_size(e.dtype);
    if (word == 0) throw io_error(path, "tensor '" + name + "' has unknown dtype '" + e.dtype + "'");
    // The product of the non-zero dimensions may not exceed the data section (or 2^31, for an
    // empty tensor): a header cannot announce more than the file holds, nor overflow a size.
    const std::uint64_t limit = std::max<std::uint64_t>(file.data.size(), std::uint64_t(1) << 31);
    std::size_t count = 1, nonzero = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) throw io_error(path, "tensor '" + name + "' has a malformed shape");
      const auto dim = d.get<std::uint64_t>();
      if (dim > 0 && nonzero > limit / dim)
        throw io_error(path, "tensor '" + name + "' has a shape larger than the file's data section of " +
                                 std::to_string(file.data.size()) + " bytes (truncated or malformed)");
      if (dim > 0) nonzero *= static_cast<std::size_t>(dim);
      e.shape.push_back(static_cast<std::size_t>(dim));
      count *= e.shape.back();
    }
    if (!v["data_offsets"][0].is_number_unsigned() || !v["data_offsets"][1].is_number_unsigned())
      throw io_error(path, "tensor '" + name + "' has malformed data_offsets");
    e.begin = v["data_offsets"][0].get<std::size_t>();
    e.end = v["data_offsets"][1].get<std::size_t>();
    if (e.begin > e.end || e.end > file.data.size())
      throw io_error(path, "truncated: tensor '" + name + "' lies at bytes [" + std::to_string(e.begin) + ", " +
                               std::to_string(e.end) + ") of a data section of " + std::to_string(file.data.size()) +
                               " bytes");
    if (e.end - e.begin != count * word)
      throw io_error(path, "tensor '" + name + "' has " + std::to_string(e.end - e.begin) + " bytes but its shape and dtype need " +
                               std::to_string(count * word));
    file.tensors.emplace(name, std::move(e));
  }
  // Tensors may not share bytes.
  std::vector<std::pair<std::size_t, std::size_t>> ranges;
  for (const auto& [name, e] : file.tensors)
    if (e.end > e.begin) ranges.emplace_back(e.begin, e.end);
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second)
      throw io_error(path, "malformed: tensors overlap at bytes [" + std::to_string(ranges[i].first) + ", " +
                               std::to_string(std::min(ranges[i].second, ranges[i - 1].second)) + ") of the data section");
  // Files written by soundnet carry a CRC-32 of their data section: a flipped bit is found here.
  const auto crc = file.metadata.find(crc_key);
  if (crc != file.metadata.end()) {
    const std::string actual = detail::crc_text(detail::crc32(file.data.data(), file.data.size()));
    if (crc->second != actual)
      throw io_error(path, "corrupt: the data section's CRC-32 is " + actual + ", the file records " + crc->second);
  }
  return file;
}

/// The metadata of a safetensors file, reading its header only (not the tensors). Throws
/// io_error naming the file when it is missing, truncated or malformed.
inline std::map<std::string, std::string> read_safetensors_metadata(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(path, "cannot open file for reading");
  unsigned char len[8];
  if (!in.read(reinterpret_cast<char*>(len), 8)) throw io_error(path, "not a safetensors file (shorter than its 8-byte header length)");
  std::uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<std::uint64_t>(len[i]) << (8 * i);
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::uint64_t>(in.tellg());
  if (header_len > size - 8)
    throw io_error(path, "truncated or not a safetensors file: header of " + std::to_string(header_len) +
                             " bytes announced, " + std::to_string(size - 8) + " present");
  std::string text(static_cast<std::size_t>(header_len), '\0');
  in.seekg(8);
  if (!in.read(&text[0], static_cast<std::streamsize>(header_len))) throw io_error(path, "read error");
  std::map<std::string, std::string> metadata;
  try {
    const auto header = nlohmann::json::parse(text);
    if (header.contains("__metadata__"))
      for (const auto& [key, value] : header["__metadata__"].items()) metadata[key] = value.get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw io_error(path, std::string("malformed safetensors header: ") + e.what());
  }
  return metadata;
}

/// One tensor to write: float32 on disk.
struct named_tensor {
  std::string name;
  std::vector<std::size_t> shape;
  std::vector<float> values;
};

/// Writes tensors (as F32) and string metadata to a safetensors file, crash-safe (see
/// detail::write_file), with the CRC-32 of the data section in the metadata (crc_key).
inline void write_safetensors(const std::string& path, const std::vector<named_tensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::ordered_json header;
  std::uint32_t crc = 0;
  for (const auto& t : tensors) crc = detail::crc32(t.values.data(), 4 * t.values.size(), crc);
  auto meta = metadata;
  meta[crc_key] = detail::crc_text(crc);
  header["__metadata__"] = meta;
  std::size_t offset = 0;
  for (const auto& t : tensors) {
    std::size_t count = 1;
    for (auto d : t.shape) count *= d;
    if (count != t.values.size()) throw error("write_safetensors: tensor '" + t.name + "' shape does not match its values");
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + 4 * count}}};
    offset += 4 * count;
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text += ' ';
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((static_cast<std::uint64_t>(text.size()) >> (8 * i)) & 0xff);
  bytes += text;
  bytes.reserve(bytes.size() + offset);
  for (const auto& t : tensors)
    bytes.append(reinterpret_cast<const char*>(t.values.data()), 4 * t.values.size());
  detail::write_file(path, bytes);
}

}  // namespace io
SOUNDNET_ABI_END
}  // namespace soundnet
