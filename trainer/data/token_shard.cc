#include "trainer/data/token_shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>

#include "checkpoint/atomic_file.h"
#include "checkpoint/posix_fd.h"

namespace dyt::data {

static_assert(std::endian::native == std::endian::little,
              "token shards are little-endian; this host is not");

namespace {

using checkpoint::errno_text;
using checkpoint::Fd;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw DataError("token shard '" + path + "': " + what);
}

}  // namespace

TokenShard TokenShard::open(const std::string& path) {
  Fd fd;
  fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd.fd < 0) fail(path, "cannot open: " + errno_text(errno));
  struct stat st;
  if (::fstat(fd.fd, &st) != 0) fail(path, "cannot stat: " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  const int64_t file_size = static_cast<int64_t>(st.st_size);
  if (file_size < kShardHeaderBytes) {
    fail(path, "file is " + std::to_string(file_size) + " bytes, shorter than the " +
                   std::to_string(kShardHeaderBytes) + "-byte header (truncated or not a shard)");
  }

  TokenShard s;
  s.path_ = path;
  s.map_bytes_ = static_cast<size_t>(file_size);
  s.map_ = ::mmap(nullptr, s.map_bytes_, PROT_READ, MAP_SHARED, fd.fd, 0);
  if (s.map_ == MAP_FAILED) {
    s.map_ = nullptr;
    fail(path, "mmap failed: " + errno_text(errno));
  }
  int32_t header[3];
  std::memcpy(header, s.map_, sizeof(header));
  const int32_t magic = header[0], version = header[1], count = header[2];
  if (magic == kShardMagicU16) {
    s.token_bytes_ = 2;
    if (version != kShardVersionU16) {
      fail(path, "version " + std::to_string(version) + " does not match magic " +
                     std::to_string(magic) + " (uint16 tokens), which expects version " +
                     std::to_string(kShardVersionU16));
    }
  } else if (magic == kShardMagicU32) {
    s.token_bytes_ = 4;
    if (version != kShardVersionU32) {
      fail(path, "version " + std::to_string(version) + " does not match magic " +
                     std::to_string(magic) + " (uint32 tokens), which expects version " +
                     std::to_string(kShardVersionU32));
    }
  } else {
    fail(path, "unknown magic " + std::to_string(magic) + "; expected " +
                   std::to_string(kShardMagicU16) + " (uint16 tokens) or " +
                   std::to_string(kShardMagicU32) + " (uint32 tokens)");
  }
  if (count < 0) fail(path, "negative token count " + std::to_string(count) + " in the header");
  const int64_t expected = kShardHeaderBytes + int64_t(count) * s.token_bytes_;
  if (file_size != expected) {
    fail(path, std::string(file_size < expected ? "truncated" : "trailing bytes") + ": header says " +
                   std::to_string(count) + " tokens, so the file should be " +
                   std::to_string(expected) + " bytes, but it is " + std::to_string(file_size));
  }
  s.count_ = count;
  s.tokens_ = static_cast<const unsigned char*>(s.map_) + kShardHeaderBytes;
  return s;
}

TokenShard::TokenShard(TokenShard&& o) noexcept
    : path_(std::move(o.path_)),
      map_(o.map_),
      map_bytes_(o.map_bytes_),
      tokens_(o.tokens_),
      count_(o.count_),
      token_bytes_(o.token_bytes_),
      max_token_(o.max_token_.load(std::memory_order_relaxed)) {
  o.map_ = nullptr;
  o.map_bytes_ = 0;
  o.tokens_ = nullptr;
  o.count_ = 0;
}

TokenShard& TokenShard::operator=(TokenShard&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    map_ = o.map_;
    map_bytes_ = o.map_bytes_;
    tokens_ = o.tokens_;
    count_ = o.count_;
    token_bytes_ = o.token_bytes_;
    max_token_.store(o.max_token_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    o.map_ = nullptr;
    o.map_bytes_ = 0;
    o.tokens_ = nullptr;
    o.count_ = 0;
  }
  return *this;
}

TokenShard::~TokenShard() { release(); }

void TokenShard::release() noexcept {
  if (map_) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
  tokens_ = nullptr;
  count_ = 0;
}

uint32_t TokenShard::operator[](int64_t i) const {
  if (i < 0 || i >= count_) {
    fail(path_, "token index " + std::to_string(i) + " out of range [0, " +
                    std::to_string(count_) + ")");
  }
  if (token_bytes_ == 2) {
    uint16_t v;
    std::memcpy(&v, tokens_ + i * 2, 2);
    return v;
  }
  uint32_t v;
  std::memcpy(&v, tokens_ + i * 4, 4);
  return v;
}

void TokenShard::read(int64_t start, int64_t n, int32_t* out) const {
  if (start < 0 || n < 0 || start > count_ || n > count_ - start) {
    fail(path_, "read of " + std::to_string(n) + " tokens at " + std::to_string(start) +
                    " is outside the shard's " + std::to_string(count_) + " tokens");
  }
  if (n == 0) return;
  if (token_bytes_ == 2) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(tokens_) + start;
    for (int64_t i = 0; i < n; ++i) out[i] = p[i];
    return;
  }
  const uint32_t* p = reinterpret_cast<const uint32_t*>(tokens_) + start;
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    bad |= p[i];
    out[i] = static_cast<int32_t>(p[i]);
  }
  if (bad > uint32_t(std::numeric_limits<int32_t>::max())) {
    for (int64_t i = 0; i < n; ++i) {
      if (p[i] > uint32_t(std::numeric_limits<int32_t>::max())) {
        fail(path_, "token " + std::to_string(p[i]) + " at position " + std::to_string(start + i) +
                        " does not fit in int32");
      }
    }
  }
}

uint32_t TokenShard::max_token() const {
  int64_t cached = max_token_.load(std::memory_order_acquire);
  if (cached >= 0) return static_cast<uint32_t>(cached);
  uint32_t m = 0;
  if (token_bytes_ == 2) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(tokens_);
    uint16_t mm = 0;
    for (int64_t i = 0; i < count_; ++i) mm = std::max(mm, p[i]);
    m = mm;
  } else {
    const uint32_t* p = reinterpret_cast<const uint32_t*>(tokens_);
    for (int64_t i = 0; i < count_; ++i) m = std::max(m, p[i]);
  }
  max_token_.store(m, std::memory_order_release);  // racing scans store the same value
  return m;
}

void write_token_shard(const std::string& path, const std::vector<uint32_t>& tokens,
                       bool force_uint32) {
  if (tokens.size() > size_t(std::numeric_limits<int32_t>::max())) {
    fail(path, std::to_string(tokens.size()) + " tokens exceed the format's limit of " +
                   std::to_string(std::numeric_limits<int32_t>::max()) + " per shard");
  }
  const bool u16 =
      !force_uint32 && std::all_of(tokens.begin(), tokens.end(), [](uint32_t t) { return t < 65536; });
  int32_t header[kShardHeaderInts] = {};
  header[0] = u16 ? kShardMagicU16 : kShardMagicU32;
  header[1] = u16 ? kShardVersionU16 : kShardVersionU32;
  header[2] = static_cast<int32_t>(tokens.size());

  try {
    checkpoint::AtomicFile out(path);
    out.write(header, sizeof(header));
    if (u16) {
      std::vector<uint16_t> buf;
      constexpr size_t kChunk = size_t{1} << 20;
      for (size_t i = 0; i < tokens.size(); i += kChunk) {
        size_t n = std::min(kChunk, tokens.size() - i);
        buf.assign(tokens.begin() + i, tokens.begin() + i + n);
        out.write(buf.data(), n * 2);
      }
    } else if (!tokens.empty()) {
      out.write(tokens.data(), tokens.size() * 4);
    }
    out.commit();
  } catch (const checkpoint::AtomicFileError& e) {
    fail(path, e.what());
  }
}

}  // namespace dyt::data
