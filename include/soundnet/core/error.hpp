// Exception types. Every error names what was wrong and, for files, which file.
#pragma once

#include <stdexcept>
#include <string>

namespace soundnet {

/// Base class of every exception the library throws.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A tensor or input has the wrong shape, length or value (e.g. NaN, too-short audio).
class shape_error : public error {
 public:
  using error::error;
};

/// A file is missing, unreadable, truncated or malformed.
class io_error : public error {
 public:
  io_error(const std::string& path, const std::string& what)
      : error(path + ": " + what), path_(path) {}
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

/// A weights file does not fit the network (names, shapes, dtypes, architecture).
class weights_error : public io_error {
 public:
  using io_error::io_error;
};

}  // namespace soundnet
