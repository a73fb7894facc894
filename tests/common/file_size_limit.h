// A write failure on demand, for tests of what a failed write leaves behind:
// while a FileSizeLimit lives, this process cannot grow any file beyond
// `bytes` (RLIMIT_FSIZE; write() fails with EFBIG, "File too large", and
// SIGXFSZ is ignored rather than fatal). Unlike a read-only directory it
// holds for root too, and unlike /dev/full it needs no control over the
// writer's file name.
#pragma once

#include <sys/resource.h>

#include <csignal>

namespace dyt::testing_support {

class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    saved_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit lim = saved_;
    lim.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &lim);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, saved_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit saved_{};
  void (*saved_handler_)(int) = SIG_DFL;
};

}  // namespace dyt::testing_support
