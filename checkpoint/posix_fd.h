// A file descriptor closed on scope exit, and errno as text: the POSIX
// plumbing the file readers and writers share (header only; it belongs with
// dyt_atomic_file, which the data tools may link).
#pragma once

#include <unistd.h>

#include <cstring>
#include <string>

namespace dyt::checkpoint {

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

inline std::string errno_text(int err) { return std::strerror(err); }

}  // namespace dyt::checkpoint
