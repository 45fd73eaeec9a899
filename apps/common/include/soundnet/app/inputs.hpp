// Input collection of the batch programs: files as given, folders' regular files (sorted, not
// recursive, hidden files skipped) and the entries of list files.
#pragma once

#include <string>
#include <vector>

namespace soundnet::app {

/// The files named by `paths` and by the list file `list` (one path a line, relative to the
/// list's folder; blank lines and lines starting with # are skipped; "" for none). A folder
/// that cannot be read is reported in `failures` ("<folder>: cannot read directory: ...") and
/// counts as a failed input. A missing file is returned as it is: reading it reports it.
/// Throws io_error for a list file that cannot be opened.
std::vector<std::string> collect_inputs(const std::vector<std::string>& paths, const std::string& list,
                                        std::vector<std::string>& failures);

/// Creates `path` and its parents; throws io_error naming it when that fails.
void make_directory(const std::string& path);

}  // namespace soundnet::app
