#include "checkpoint/safetensors.h"


#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>
#include <string_view>

#include "common/shape_text.h"
#include "checkpoint/atomic_file.h"
#include "checkpoint/posix_fd.h"
#include "checkpoint/json_lite.h"

namespace dyt::checkpoint {

static_assert(std::endian::native == std::endian::little,
              "safetensors I/O assumes a little-endian host");

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw CheckpointError("safetensors file '" + path + "': " + what);
}

// numel of `shape`, or -1 on a negative dimension, -2 on overflow.
int64_t checked_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -2;
    n *= d;
  }
  return n;
}


void pread_all(int fd, void* data, size_t n, uint64_t offset, const std::string& path) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    size_t chunk = std::min<size_t>(n, size_t{1} << 30);
    ssize_t r = ::pread(fd, p, chunk, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      fail(path, "read failed at byte " + std::to_string(offset) + ": " + errno_text(errno));
    }
    if (r == 0) fail(path, "unexpected end of file at byte " + std::to_string(offset));
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

// Byte offset of the first invalid UTF-8 sequence, or npos when valid.
size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len;
    uint32_t cp;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return i;
    if (i + len > s.size()) return i;
    for (size_t k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string_view::npos;
}

float bf16_to_float(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }

float f16_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0x1F) {  // inf / nan
    bits = sign | 0x7F800000u | (mant << 13);
  } else if (exp != 0) {  // normal
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {  // zero
    bits = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400) == 0);
    bits = sign | (uint32_t(112 - e) << 23) | ((mant & 0x3FF) << 13);
  }
  return std::bit_cast<float>(bits);
}

int dtype_size(const std::string& dtype, bool* supported) {
  static const std::map<std::string, int> kKnown = {
      {"BOOL", 1}, {"U8", 1},   {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2},  {"F16", 2},  {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4},  {"F64", 8},  {"I64", 8},     {"U64", 8}};
  *supported = dtype == "F32" || dtype == "F16" || dtype == "BF16";
  auto it = kKnown.find(dtype);
  return it == kKnown.end() ? 0 : it->second;
}

struct Entry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  int64_t numel = 0;
  uint64_t begin = 0, end = 0;
};

}  // namespace

// ---------------------------------------------------------------- writing

void write_safetensors(const std::string& path, const std::vector<TensorSpec>& tensors,
                       const TensorSource& source, const std::map<std::string, std::string>& metadata) {
  // Validate everything and build the header before touching the disk.
  std::set<std::string> names;
  std::vector<uint64_t> nbytes(tensors.size());
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first_md = true;
    for (const auto& [k, v] : metadata) {
      if (!first_md) header += ',';
      first_md = false;
      json::append_quoted(header, k);
      header += ':';
      json::append_quoted(header, v);
    }
    header += '}';
    first = false;
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorSpec& t = tensors[i];
    if (t.name.empty()) fail(path, "tensor #" + std::to_string(i) + " has an empty name");
    if (t.name == "__metadata__") fail(path, "\"__metadata__\" is reserved and cannot name a tensor");
    if (!names.insert(t.name).second) fail(path, "duplicate tensor name '" + t.name + "'");
    int64_t numel = checked_numel(t.shape);
    if (numel == -1) fail(path, "tensor '" + t.name + "' has a negative dimension in shape " + shape_text(t.shape));
    if (numel < 0 || uint64_t(numel) > std::numeric_limits<uint64_t>::max() / 4 / 2) {
      fail(path, "tensor '" + t.name + "' shape " + shape_text(t.shape) + " is too large");
    }
    nbytes[i] = uint64_t(numel) * 4;
    if (!first) header += ',';
    first = false;
    json::append_quoted(header, t.name);
    header += ":{\"dtype\":\"F32\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (d) header += ',';
      header += std::to_string(t.shape[d]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + nbytes[i]) + "]}";
    offset += nbytes[i];
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');
  if (header.size() > kMaxSafetensorsHeaderBytes) {
    fail(path, "header of " + std::to_string(header.size()) + " bytes exceeds the limit of " +
                   std::to_string(kMaxSafetensorsHeaderBytes));
  }

  try {
    AtomicFile out(path);
    uint64_t n = header.size();
    unsigned char len_le[8];
    for (int b = 0; b < 8; ++b) len_le[b] = static_cast<unsigned char>(n >> (8 * b));
    out.write(len_le, 8);
    out.write(header.data(), header.size());
    std::vector<float> scratch;
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (!nbytes[i]) continue;
      scratch.clear();
      const float* data = source(i, scratch);
      if (data == nullptr) fail(path, "tensor '" + tensors[i].name + "' has null data");
      out.write(data, nbytes[i]);
    }
    out.commit();
  } catch (const AtomicFileError& e) {
    fail(path, e.what());
  }
}

void write_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const TensorRef& t : tensors) {
    if (t.data == nullptr && checked_numel(t.shape) > 0)
      fail(path, "tensor '" + t.name + "' has null data");
    specs.push_back({t.name, t.shape});
  }
  write_safetensors(
      path, specs, [&](size_t i, std::vector<float>&) { return tensors[i].data; }, metadata);
}

// ---------------------------------------------------------------- reading

namespace {

// Parses and checks the header of the open file `fd` (see
// read_safetensors_header).
SafetensorsHeader parse_header(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) fail(path, "cannot stat: " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    fail(path, "file is " + std::to_string(file_size) +
                   " bytes, too short for the 8-byte header length (truncated?)");
  }

  unsigned char len_le[8];
  pread_all(fd, len_le, 8, 0, path);
  uint64_t n = 0;
  for (int b = 0; b < 8; ++b) n |= uint64_t(len_le[b]) << (8 * b);
  if (n > kMaxSafetensorsHeaderBytes) {
    fail(path, "header length " + std::to_string(n) + " exceeds the limit of " +
                   std::to_string(kMaxSafetensorsHeaderBytes) + " bytes (corrupt file?)");
  }
  if (n > file_size - 8) {
    fail(path, "header length " + std::to_string(n) + " runs past the end of the " +
                   std::to_string(file_size) + "-byte file (truncated or corrupt)");
  }
  std::string text(n, '\0');
  pread_all(fd, text.data(), n, 8, path);
  if (size_t bad = find_invalid_utf8(text); bad != std::string_view::npos) {
    fail(path, "header is not valid UTF-8 at header byte " + std::to_string(bad));
  }
  json::Value root;
  try {
    root = json::parse(text);
  } catch (const json::JsonError& e) {
    fail(path, std::string("malformed JSON header: ") + e.what());
  }
  if (!root.is_object()) {
    fail(path, std::string("header must be a JSON object, found ") + json::kind_name(root.kind()));
  }

  const uint64_t buffer_size = file_size - 8 - n;
  SafetensorsHeader h;
  h.data_start = 8 + n;
  h.file_size = file_size;
  std::map<std::string, std::string>& md = h.metadata;
  std::vector<Entry> entries;
  for (const auto& [name, v] : root.as_object()) {
    if (name == "__metadata__") {
      if (!v.is_object()) fail(path, "\"__metadata__\" must be an object of strings");
      for (const auto& [k, mv] : v.as_object()) {
        if (!mv.is_string()) {
          fail(path, "\"__metadata__\" entry '" + k + "' must be a string, found " +
                         json::kind_name(mv.kind()));
        }
        md[k] = mv.as_string();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!v.is_object()) fail(path, where + ": entry must be an object");
    Entry e;
    e.name = name;
    const json::Value* dtype = v.find("dtype");
    const json::Value* shape = v.find("shape");
    const json::Value* offsets = v.find("data_offsets");
    if (!dtype || !dtype->is_string()) fail(path, where + ": missing or non-string \"dtype\"");
    if (!shape || !shape->is_array()) fail(path, where + ": missing or non-array \"shape\"");
    if (!offsets || !offsets->is_array() || offsets->as_array().size() != 2) {
      fail(path, where + ": \"data_offsets\" must be an array [begin, end]");
    }
    e.dtype = dtype->as_string();
    bool supported = false;
    int esize = dtype_size(e.dtype, &supported);
    if (esize == 0) fail(path, where + ": unknown dtype \"" + e.dtype + "\"");
    if (!supported) {
      fail(path, where + ": unsupported dtype \"" + e.dtype + "\" (only F32, BF16 and F16 are read)");
    }
    for (const json::Value& d : shape->as_array()) {
      if (!d.is_int() || d.as_int() < 0) {
        fail(path, where + ": shape entries must be non-negative integers");
      }
      e.shape.push_back(d.as_int());
    }
    for (int k = 0; k < 2; ++k) {
      const json::Value& o = offsets->as_array()[k];
      if (!o.is_int() || o.as_int() < 0) {
        fail(path, where + ": data_offsets must be non-negative integers");
      }
    }
    e.begin = uint64_t(offsets->as_array()[0].as_int());
    e.end = uint64_t(offsets->as_array()[1].as_int());
    if (e.begin > e.end) {
      fail(path, where + ": data_offsets [" + std::to_string(e.begin) + ", " +
                     std::to_string(e.end) + "] are reversed");
    }
    if (e.end > buffer_size) {
      fail(path, where + ": data_offsets [" + std::to_string(e.begin) + ", " +
                     std::to_string(e.end) + "] out of range: the data buffer has " +
                     std::to_string(buffer_size) + " bytes (truncated file?)");
    }
    e.numel = checked_numel(e.shape);
    if (e.numel < 0 || uint64_t(e.numel) > std::numeric_limits<uint64_t>::max() / uint64_t(esize)) {
      fail(path, where + ": shape " + shape_text(e.shape) + " is too large (its size overflows)");
    }
    uint64_t want = uint64_t(e.numel) * uint64_t(esize);
    if (e.end - e.begin != want) {
      fail(path, where + ": data_offsets [" + std::to_string(e.begin) + ", " +
                     std::to_string(e.end) + "] span " + std::to_string(e.end - e.begin) +
                     " bytes but shape " + shape_text(e.shape) + " of " + e.dtype + " needs " +
                     std::to_string(want));
    }
    entries.push_back(std::move(e));
  }

  // The tensors must tile the data buffer exactly: no overlap, no gaps.
  std::vector<const Entry*> order;
  for (const Entry& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t expected = 0;
  const Entry* prev = nullptr;
  for (const Entry* e : order) {
    if (e->begin < expected) {
      fail(path, "tensor '" + e->name + "' data_offsets [" + std::to_string(e->begin) + ", " +
                     std::to_string(e->end) + "] overlap tensor '" + prev->name + "' ending at " +
                     std::to_string(expected));
    }
    if (e->begin > expected) {
      fail(path, "gap in the data buffer: bytes [" + std::to_string(expected) + ", " +
                     std::to_string(e->begin) + ") before tensor '" + e->name +
                     "' belong to no tensor");
    }
    expected = e->end;
    prev = e;
  }
  if (expected != buffer_size) {
    fail(path, "data buffer has " + std::to_string(buffer_size) + " bytes but the tensors cover " +
                   std::to_string(expected) + " (trailing bytes)");
  }

  for (Entry& e : entries)
    h.tensors.emplace(e.name, SafetensorsEntry{std::move(e.dtype), std::move(e.shape), e.numel, e.begin, e.end});
  return h;
}

}  // namespace

SafetensorsHeader read_safetensors_header(const std::string& path) {
  Fd fd;
  fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd.fd < 0) fail(path, "cannot open: " + errno_text(errno));
  return parse_header(fd.fd, path);
}

std::map<std::string, LoadedTensor> read_safetensors(const std::string& path,
                                                     std::map<std::string, std::string>* metadata) {
  Fd fd;
  fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd.fd < 0) fail(path, "cannot open: " + errno_text(errno));
  SafetensorsHeader h = parse_header(fd.fd, path);
  std::map<std::string, LoadedTensor> out;
  std::vector<uint16_t> half;
  const uint64_t base = h.data_start;
  for (const auto& [name, e] : h.tensors) {
    LoadedTensor t;
    t.shape = e.shape;
    t.data.resize(size_t(e.numel));
    if (e.numel > 0) {
      if (e.dtype == "F32") {
        pread_all(fd.fd, t.data.data(), e.end - e.begin, base + e.begin, path);
      } else {
        half.resize(size_t(e.numel));
        pread_all(fd.fd, half.data(), e.end - e.begin, base + e.begin, path);
        if (e.dtype == "BF16") {
          for (size_t i = 0; i < half.size(); ++i) t.data[i] = bf16_to_float(half[i]);
        } else {
          for (size_t i = 0; i < half.size(); ++i) t.data[i] = f16_to_float(half[i]);
        }
      }
    }
    out.emplace(name, std::move(t));
  }
  if (metadata) *metadata = std::move(h.metadata);
  return out;
}

// ---------------------------------------------------------------- mapping

MappedSafetensors::MappedSafetensors(const std::string& path) : path_(path) {
  Fd fd;
  fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd.fd < 0) fail(path, "cannot open: " + errno_text(errno));
  header_ = parse_header(fd.fd, path);
  size_ = static_cast<size_t>(header_.file_size);
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd.fd, 0);
  if (p == MAP_FAILED) fail(path, "cannot map: " + errno_text(errno));
  base_ = static_cast<const char*>(p);
}

MappedSafetensors::~MappedSafetensors() {
  if (base_) ::munmap(const_cast<char*>(base_), size_);
}

const char* MappedSafetensors::f32_bytes(const std::string& name) const {
  auto it = header_.tensors.find(name);
  if (it == header_.tensors.end()) fail(path_, "has no tensor '" + name + "'");
  if (it->second.dtype != "F32")
    fail(path_, "tensor '" + name + "' is " + it->second.dtype + ", not F32");
  return base_ + header_.data_start + it->second.begin;
}

}  // namespace dyt::checkpoint
