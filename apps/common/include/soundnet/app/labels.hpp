// Category names of the teachers' classes (the bundled lists or a user's).
#pragma once

#include <string>
#include <vector>

namespace soundnet::app {

/// One category name per line, in class order: "n01440764 tench, Tinca tinca" gives
/// "tench, Tinca tinca"; "/a/abbey" or "/a/airfield 0" give "abbey", "airfield". Throws
/// io_error naming the file when it cannot be read or does not hold `classes` names.
std::vector<std::string> read_labels(const std::string& path, std::size_t classes);

/// The folder of the bundled label files, ending in '/': `source_data`/labels in a build tree,
/// <prefix>/share/soundnet/labels when installed.
std::string labels_folder(const std::string& source_data);

}  // namespace soundnet::app
