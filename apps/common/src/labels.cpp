#include <soundnet/app/labels.hpp>
#include <soundnet/core/error.hpp>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace soundnet::app {

std::vector<std::string> read_labels(const std::string& path, std::size_t classes) {
  std::ifstream in(path);
  if (!in) throw io_error(path, "cannot open label file");
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line[0] == '/') {
      line = line.size() > 3 ? line.substr(3) : line;
      const auto space = line.rfind(' ');
      if (space != std::string::npos && line.find_first_not_of("0123456789", space + 1) == std::string::npos)
        line = line.substr(0, space);
    } else if (line.size() > 10 && line[0] == 'n' && line[9] == ' ') {
      line = line.substr(10);
    }
    names.push_back(line);
  }
  if (names.size() != classes)
    throw io_error(path, "has " + std::to_string(names.size()) + " categories; the network has " + std::to_string(classes));
  return names;
}

std::string labels_folder(const std::string& source_data) {
  const fs::path source = fs::path(source_data) / "labels";
  if (fs::is_directory(source)) return source.string() + "/";
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return (exe.parent_path().parent_path() / "share" / "soundnet" / "labels").string() + "/";
}

}  // namespace soundnet::app
