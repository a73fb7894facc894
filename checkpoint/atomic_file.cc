#include "checkpoint/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace dyt::checkpoint {
namespace {

[[noreturn]] void fail(const std::string& what, int err) {
  throw AtomicFileError(what + ": " + std::strerror(err));
}

std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("cannot create temporary file '" + tmp_ + "'", errno);
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  if (fd_ >= 0) ::close(fd_);
  ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    // Linux writes at most ~2 GiB per call; larger buffers go in pieces.
    const ssize_t w = ::write(fd_, p, std::min<size_t>(bytes, size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("write to '" + tmp_ + "' failed", errno);
    }
    p += w;
    bytes -= static_cast<size_t>(w);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) fail("fsync of '" + tmp_ + "' failed", errno);
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("close of '" + tmp_ + "' failed", errno);
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    fail("cannot rename '" + tmp_ + "' into place", errno);
  }
  committed_ = true;
  // Make the rename durable (best effort: some file systems refuse to fsync
  // a directory, and the data itself is already safe).
  const int dfd = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace dyt::checkpoint
