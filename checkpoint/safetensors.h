// Reading and writing the safetensors format (https://github.com/huggingface/safetensors).
//
// Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON (padded
// with spaces so that 8 + N is a multiple of 8), then the byte buffer. The
// JSON object maps each tensor name to {"dtype", "shape", "data_offsets":
// [begin, end]} (offsets relative to the byte buffer), plus an optional
// "__metadata__" object of string -> string. Tensors are contiguous, without
// gaps or overlap, little-endian.
//
// We write F32 only (tensors in the order given); we read F32, BF16 and F16
// (converted to float). Every problem in a file is a CheckpointError whose
// message names the file and the problem.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace dyt::checkpoint {

struct CheckpointError : std::runtime_error {
  using runtime_error::runtime_error;
};

// A tensor to write: `data` points at prod(shape) contiguous floats (row-major)
// that stay alive for the duration of the call. Scalars are written by us with
// shape [1]; shape [] (rank 0, one element) is accepted as well.
struct TensorRef {
  std::string name;
  std::vector<int64_t> shape;
  const float* data;
};

// Writes `tensors` as F32 to `path` atomically: the bytes go to a temporary
// beside it (atomic_file.h), which is fsynced and renamed over `path`, so `path` is either the old file
// or the complete new one. Throws CheckpointError for duplicate or empty
// names, the reserved name "__metadata__", negative dimensions, null data for
// a non-empty tensor, or any I/O failure (the temporary file is removed).
void write_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The same, for tensors produced one at a time (export of a model larger
// than one buffer): the header is written from `tensors`, then the data of
// tensor i is source(i, scratch): a pointer to its prod(shape) floats, which
// may be `scratch` filled by the source (emptied before each call).
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};
using TensorSource = std::function<const float*(size_t i, std::vector<float>& scratch)>;
void write_safetensors(const std::string& path, const std::vector<TensorSpec>& tensors,
                       const TensorSource& source,
                       const std::map<std::string, std::string>& metadata = {});

struct LoadedTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Reads every tensor of `path` (F32, BF16 or F16, converted to float). When
// `metadata` is given it receives the "__metadata__" entries (empty if none).
// Throws CheckpointError naming `path` and the problem: missing or unreadable
// file, file shorter than its header, header not valid UTF-8/JSON or of the
// wrong structure, unknown or unsupported dtype, negative dimensions, offsets
// out of range, overlapping, leaving gaps, or not matching shape x dtype size.
std::map<std::string, LoadedTensor> read_safetensors(
    const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

// A file's header: each tensor's dtype, shape and byte range in the data
// buffer, which starts at data_start. read_safetensors_header checks it as
// read_safetensors does (offsets tile the buffer, sizes match the shapes, the
// file is long enough), without reading any tensor.
struct SafetensorsEntry {
  std::string dtype;
  std::vector<int64_t> shape;
  int64_t numel = 0;
  uint64_t begin = 0, end = 0;  // relative to data_start
};
struct SafetensorsHeader {
  std::map<std::string, SafetensorsEntry> tensors;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0, file_size = 0;
};
SafetensorsHeader read_safetensors_header(const std::string& path);

// A safetensors file mapped read-only, its header checked as above: a reader
// copies just the bytes it needs, and the pages it never touches are never
// read (a rank loading its shard of a large checkpoint).
class MappedSafetensors {
 public:
  explicit MappedSafetensors(const std::string& path);  // throws CheckpointError
  ~MappedSafetensors();
  MappedSafetensors(const MappedSafetensors&) = delete;
  MappedSafetensors& operator=(const MappedSafetensors&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  // The first byte of F32 tensor `name` (little-endian floats, possibly
  // unaligned: copy with memcpy). Throws CheckpointError naming the file
  // when the tensor is absent or not F32.
  const char* f32_bytes(const std::string& name) const;

 private:
  std::string path_;
  SafetensorsHeader header_;
  const char* base_ = nullptr;
  size_t size_ = 0;
};

// Largest header the reader accepts (the reference implementation's limit).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

}  // namespace dyt::checkpoint
