#include "checkpoint/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <utility>

namespace dyt::checkpoint {
namespace {

constexpr const char* kTempInfix = ".tmp.";
constexpr size_t kSuffixChars = 6;
constexpr int kCreateTries = 100;

[[noreturn]] void fail(const std::string& what, int err) {
  throw AtomicFileError(what + ": " + std::strerror(err));
}

std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string base_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

// Six random characters. Names only need to differ, not to be secret or
// reproducible: O_EXCL catches the rare collision and another name is drawn.
std::string random_suffix() {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 gen([] {
    std::random_device rd;
    return (uint64_t{rd()} << 32) ^ rd() ^ static_cast<uint64_t>(::getpid()) ^
           static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
           (counter.fetch_add(1) << 48);
  }());
  std::string s(kSuffixChars, 'x');
  for (char& c : s) c = kAlphabet[gen() % (sizeof kAlphabet - 1)];
  return s;
}

bool same_file(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

// Removes the temporaries of `target` that no live writer holds. A writer
// keeps an flock on its temporary from creation to rename, and the kernel
// drops it when the writer dies, so a lock we can take marks an abandoned
// file. Best effort: whatever cannot be opened or locked is left.
void remove_abandoned_temporaries(const std::string& target) {
  const std::string dir = parent_dir(target), name = base_name(target);
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (const dirent* e = ::readdir(d)) {
    if (!is_atomic_temp_name(e->d_name, name)) continue;
    const std::string p = dir + "/" + e->d_name;
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) continue;
    struct stat held, now;
    if (::fstat(fd, &held) == 0 && S_ISREG(held.st_mode) && ::flock(fd, LOCK_EX | LOCK_NB) == 0 &&
        ::lstat(p.c_str(), &now) == 0 && same_file(held, now))
      ::unlink(p.c_str());
    ::close(fd);  // releases the lock
  }
  ::closedir(d);
}

}  // namespace

bool is_atomic_temp_name(const std::string& name, const std::string& target_name) {
  const std::string prefix = target_name + kTempInfix;
  if (name.size() != prefix.size() + kSuffixChars || name.compare(0, prefix.size(), prefix) != 0)
    return false;
  return std::all_of(name.begin() + static_cast<std::ptrdiff_t>(prefix.size()), name.end(),
                     [](char c) { return std::strchr(kAlphabet, c) != nullptr && c != '\0'; });
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  for (int attempt = 0; attempt < kCreateTries && fd_ < 0; ++attempt) {
    tmp_ = path_ + kTempInfix + random_suffix();
    const int fd = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (errno == EEXIST) continue;
      fail("cannot create temporary file '" + tmp_ + "'", errno);
    }
    // Lock it before anyone could mistake it for abandoned. A cleaner may
    // have come between open and flock: it holds the lock (we draw another
    // name) or has already unlinked the file (the name no longer leads to
    // ours; again another). A file system without flock (ENOLCK, EINVAL)
    // writes unlocked, and its cleaners cannot lock either, so they skip it.
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
      ::close(fd);
      continue;
    }
    struct stat mine, named;
    if (::fstat(fd, &mine) != 0 || ::stat(tmp_.c_str(), &named) != 0 || !same_file(mine, named)) {
      ::close(fd);
      continue;
    }
    fd_ = fd;
  }
  if (fd_ < 0) fail("cannot create a temporary file beside '" + path_ + "' in " +
                        std::to_string(kCreateTries) + " tries", EEXIST);
  remove_abandoned_temporaries(path_);  // ours is locked, so it stays
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  if (fd_ >= 0) {
    ::unlink(tmp_.c_str());  // while still locked: no cleaner can be racing us for it
    ::close(fd_);
  }
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
  // Renamed while still locked, then closed: the temporary never exists
  // unlocked while its writer lives.
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    fail("cannot rename '" + tmp_ + "' into place", errno);
  }
  committed_ = true;
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("close of '" + path_ + "' failed", errno);
  // Make the rename durable (best effort: some file systems refuse to fsync
  // a directory, and the data itself is already safe).
  const int dfd = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomically(const std::string& path, const std::string& text) {
  AtomicFile out(path);
  out.write(text.data(), text.size());
  out.commit();
}

}  // namespace dyt::checkpoint
