#include <soundnet/app/inputs.hpp>
#include <soundnet/core/error.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace soundnet::app {

std::vector<std::string> collect_inputs(const std::vector<std::string>& paths, const std::string& list,
                                        std::vector<std::string>& failures) {
  std::vector<std::string> files;
  auto add = [&](const std::string& p) {
    std::error_code ec;
    if (!fs::is_directory(p, ec)) {
      files.push_back(p);  // a missing file is reported when it is read
      return;
    }
    std::vector<std::string> found;
    fs::directory_iterator it(p, ec), end;
    if (ec) {
      failures.push_back(p + ": cannot read directory: " + ec.message());
      return;
    }
    for (; it != end; it.increment(ec)) {
      if (ec) {
        failures.push_back(p + ": cannot read directory: " + ec.message());
        break;
      }
      const auto name = it->path().filename().string();
      if (!name.empty() && name[0] != '.' && it->is_regular_file(ec)) found.push_back(it->path().string());
    }
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  };
  for (const auto& p : paths) add(p);
  if (!list.empty()) {
    std::ifstream in(list);
    if (!in) throw io_error(list, "cannot open list file");
    const fs::path base = fs::path(list).parent_path();
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || line[0] == '#') continue;
      add(fs::path(line).is_absolute() ? line : (base / line).string());
    }
  }
  return files;
}

void make_directory(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec || !fs::is_directory(path))
    throw io_error(path, "cannot create output directory" + (ec ? ": " + ec.message() : std::string()));
}

}  // namespace soundnet::app
