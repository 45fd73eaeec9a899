#include <soundnet/app/manifest.hpp>
#include <soundnet/app/waveform.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace soundnet::app {

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (c == '"') {
      if (quoted && i + 1 < line.size() && line[i + 1] == '"') out.back() += '"', ++i;
      else quoted = !quoted;
    } else if (c == ',' && !quoted) {
      out.emplace_back();
    } else if (c != '\r') {
      out.back() += c;
    }
  }
  return out;
}

std::vector<meta_row> read_meta(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw io_error(path, "cannot open the metadata CSV");
  std::string line;
  if (!std::getline(in, line)) throw io_error(path, "is empty: it needs a header with filename, fold, target");
  const auto header = split_csv(line);
  auto column = [&](const char* name) {
    for (std::size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return static_cast<long>(i);
    throw io_error(path, std::string("has no '") + name + "' column in its header");
  };
  const long fn = column("filename"), fold = column("fold"), target = column("target");
  std::vector<meta_row> rows;
  for (long number = 2; std::getline(in, line); ++number) {
    if (line.empty() || line == "\r") continue;
    const auto f = split_csv(line);
    const long need = std::max({fn, fold, target});
    if (static_cast<long>(f.size()) <= need)
      throw io_error(path, "row " + std::to_string(number) + " has " + std::to_string(f.size()) + " columns");
    meta_row r;
    r.filename = f[std::size_t(fn)];
    try {
      std::size_t used = 0;
      r.fold = std::stoi(f[std::size_t(fold)], &used);
      if (used != f[std::size_t(fold)].size()) throw std::invalid_argument("");
      r.target = std::stoi(f[std::size_t(target)], &used);
      if (used != f[std::size_t(target)].size()) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw io_error(path, "row " + std::to_string(number) + " (" + r.filename +
                                         "): fold and target must be integers");
    }
    rows.push_back(r);
  }
  if (rows.empty()) throw io_error(path, "lists no clips");
  return rows;
}

xt::xarray<float> read_targets(const std::string& path, long classes, const char* head) {
  auto t = io::read_npy<float>(path);
  if (t.dimension() != 2 || static_cast<long>(t.shape(1)) != classes) {
    std::string s;
    for (auto d : t.shape()) s += (s.empty() ? "" : ", ") + std::to_string(d);
    throw io_error(path, std::string(head) + " targets must have shape (steps, " + std::to_string(classes) + "); got (" +
                             s + ")");
  }
  for (std::size_t i = 0; i < t.size(); ++i)
    if (!std::isfinite(t.data()[i]) || t.data()[i] < 0)
      throw io_error(path, std::string(head) + " targets must be finite and non-negative (element " + std::to_string(i) + ")");
  return t;
}

std::vector<training_clip> read_training_manifest(const std::string& manifest, const manifest_rules& rules) {
  std::ifstream in(manifest);
  if (!in) throw io_error(manifest, "cannot open manifest");
  std::string line;
  if (!std::getline(in, line)) throw io_error(manifest, "empty manifest (expected header audio,objects,scenes)");
  if (split_csv(line) != std::vector<std::string>{"audio", "objects", "scenes"})
    throw io_error(manifest, "header must be 'audio,objects,scenes', got '" + line + "'");
  const fs::path base = fs::path(manifest).parent_path();
  std::vector<training_clip> clips;
  std::string failures;
  long row = 1, failed = 0;
  while (std::getline(in, line)) {
    ++row;
    if (line.empty() || line == "\r") continue;
    const auto f = split_csv(line);
    try {
      if (f.size() != 3)
        throw io_error(manifest, "row " + std::to_string(row) + " has " + std::to_string(f.size()) + " fields, expected 3");
      auto file = [&](const std::string& name) {
        return io::detail::inside_folder(base.string(), name, manifest + " row " + std::to_string(row),
                                         rules.allow_outside_paths);
      };
      training_clip c{file(f[0]), file(f[1]), file(f[2])};
      c.samples = static_cast<long>(read_waveform(c.audio).size());
      const auto to = read_targets(c.objects, rules.objects, "object");
      const auto ts = read_targets(c.scenes, rules.scenes, "scene");
      if (to.shape(0) != ts.shape(0))
        throw io_error(c.scenes, "has " + std::to_string(ts.shape(0)) + " steps but " + c.objects + " has " +
                                     std::to_string(to.shape(0)));
      c.target_rows = static_cast<long>(to.shape(0));
      const long need = rules.output_length(rules.crop ? rules.crop : c.samples);
      if (rules.crop) {
        if (c.samples < rules.crop)
          throw io_error(c.audio, "has " + std::to_string(c.samples) + " samples, shorter than --crop-samples " +
                                      std::to_string(rules.crop));
        if (c.target_rows < need)
          throw io_error(c.objects, "has " + std::to_string(c.target_rows) + " steps; a crop of " +
                                        std::to_string(rules.crop) + " samples needs " + std::to_string(need));
      } else {
        if (c.samples < rules.min_input_length)
          throw io_error(c.audio, "has " + std::to_string(c.samples) + " samples; " + rules.arch + " needs at least " +
                                      std::to_string(rules.min_input_length));
        if (c.target_rows != need)
          throw io_error(c.objects, "has " + std::to_string(c.target_rows) + " steps but " + rules.arch + " gives " +
                                        std::to_string(need) + " output steps for " + std::to_string(c.samples) +
                                        " samples");
      }
      clips.push_back(std::move(c));
    } catch (const error& e) {
      failures += std::string("  ") + e.what() + "\n";
      ++failed;
    }
  }
  if (failed) throw io_error(manifest, std::to_string(failed) + " bad row(s):\n" + failures.substr(0, failures.size() - 1));
  if (clips.empty()) throw io_error(manifest, "no clips");
  return clips;
}

std::string file_fingerprint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::uint64_t h = 1469598103934665603ULL;
  char buf[1 << 14];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    for (std::streamsize i = 0; i < in.gcount(); ++i) h = (h ^ static_cast<unsigned char>(buf[i])) * 1099511628211ULL;
    if (!in) break;
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

}  // namespace soundnet::app
