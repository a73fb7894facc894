#include "trainer/data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <regex>
#include <thread>
#include <unordered_map>

#include "checkpoint/atomic_file.h"
#include "trainer/data/mix.h"

// Exported by libsentencepiece (common.h, not an installed header): the
// minimum severity its LOG() prints (0 info, 1 warning, 2 error).
namespace sentencepiece::logging {
void SetMinLogLevel(int v);
}

namespace dyt::data {

namespace fs = std::filesystem;

namespace {

constexpr int kDefaultVocab = 4096;
constexpr size_t kShardTokens = 100'000'000;  // a new shard after this many tokens (llm.c's size)
constexpr int kSpmSeed = 20240520;            // SentencePiece's global RNG (unused by BPE without sampling)

// Offset of the first byte that is not part of valid UTF-8 text (NUL counts
// as invalid: it marks binary data), or -1 when all of `s` is valid.
int64_t invalid_utf8_offset(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c == 0) return static_cast<int64_t>(i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return static_cast<int64_t>(i);
    }
    if (i + len > n) return static_cast<int64_t>(i);
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return static_cast<int64_t>(i);
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    const bool overlong = (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return static_cast<int64_t>(i);
    i += len;
  }
  return -1;
}

std::string read_file(const std::string& path, const std::string& what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError(what + " '" + path + "': cannot read: " + std::strerror(errno));
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw DataError(what + " '" + path + "': read failed");
  return s;
}

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  });
}

uint64_t document_hash(std::string_view text, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return fmix64(h ^ fmix64(seed + 0x9e3779b97f4a7c15ULL));
}

// Feeds training lines to SentencePiece.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string_view>& lines) : lines_(lines) { skip_empty(); }
  bool done() const override { return i_ >= lines_.size(); }
  void Next() override {
    ++i_;
    skip_empty();
  }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  void skip_empty() {
    while (i_ < lines_.size() && lines_[i_].empty()) ++i_;
    if (i_ < lines_.size()) value_.assign(lines_[i_]);
  }
  const std::vector<std::string_view>& lines_;
  size_t i_ = 0;
  std::string value_;
};

std::string shard_name(const char* split, size_t index) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s_%03zu.bin", split, index);
  return buf;
}

}  // namespace

// ---- corpus ------------------------------------------------------------------

std::vector<std::string> list_input_files(const std::vector<std::string>& inputs,
                                          std::vector<std::string>* skipped) {
  std::vector<std::string> files;
  for (const std::string& input : inputs) {
    std::error_code ec;
    const fs::file_status st = fs::status(input, ec);
    if (ec || !fs::exists(st)) {
      throw DataError("--input '" + input + "': no such file or directory");
    }
    if (fs::is_regular_file(st)) {
      files.push_back(input);
      continue;
    }
    if (!fs::is_directory(st)) {
      throw DataError("--input '" + input + "': not a regular file or a directory");
    }
    std::vector<std::string> found;
    fs::recursive_directory_iterator it(input, fs::directory_options::none, ec);
    if (ec) throw DataError("--input '" + input + "': cannot list directory: " + ec.message());
    for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) throw DataError("--input '" + input + "': cannot list directory: " + ec.message());
      const fs::path& p = it->path();
      const std::string name = p.filename().string();
      const fs::file_status ls = it->symlink_status(ec);
      if (ec) throw DataError("'" + p.string() + "': cannot stat: " + ec.message());
      const bool dir = fs::is_directory(ls);
      if (!name.empty() && name[0] == '.') {
        if (dir) it.disable_recursion_pending();
        continue;
      }
      if (dir) {
        if (name == "off") it.disable_recursion_pending();  // fortune's offensive set
        continue;
      }
      if (!fs::is_regular_file(ls)) continue;  // symlinks (e.g. fortune's *.u8), devices, ...
      const std::string ext = p.extension().string();
      if (ext == ".dat" || ext == ".u8") continue;  // fortune's index files and aliases
      found.push_back(p.string());
    }
    std::sort(found.begin(), found.end());
    for (std::string& f : found) {
      const std::string text = read_file(f, "input file");
      const int64_t bad = invalid_utf8_offset(text);
      if (bad >= 0) {
        if (skipped) skipped->push_back(f + " (not UTF-8 text at byte " + std::to_string(bad) + ")");
        continue;
      }
      files.push_back(std::move(f));
    }
  }
  return files;
}

std::vector<Document> split_documents(std::string_view text, const std::string& path) {
  std::vector<Document> docs;
  size_t doc_start = 0, doc_line = 1, line_start = 0, line_no = 1;
  auto emit = [&](size_t end) {
    std::string_view d = text.substr(doc_start, end - doc_start);
    if (!d.empty() && d.back() == '\n') d.remove_suffix(1);
    if (!d.empty() && d.back() == '\r') d.remove_suffix(1);
    if (!is_blank(d)) docs.push_back({std::string(d), path + ":" + std::to_string(doc_line)});
  };
  while (line_start < text.size()) {
    size_t nl = text.find('\n', line_start);
    const size_t line_end = nl == std::string_view::npos ? text.size() : nl;
    const size_t next = nl == std::string_view::npos ? text.size() : nl + 1;
    std::string_view line = text.substr(line_start, line_end - line_start);
    if (line == "%" || line == "%\r") {
      emit(line_start);
      doc_start = next;
      doc_line = line_no + 1;
    }
    line_start = next;
    ++line_no;
  }
  emit(text.size());
  return docs;
}

std::vector<Document> read_documents(const std::vector<std::string>& files) {
  std::vector<Document> docs;
  for (const std::string& f : files) {
    const std::string text = read_file(f, "input file");
    const int64_t bad = invalid_utf8_offset(text);
    if (bad >= 0) {
      throw DataError("input file '" + f + "': not UTF-8 text (invalid byte at offset " +
                      std::to_string(bad) + ")");
    }
    std::vector<Document> d = split_documents(text, f);
    std::move(d.begin(), d.end(), std::back_inserter(docs));
  }
  return docs;
}

std::vector<bool> choose_validation(const std::vector<Document>& docs, double fraction,
                                    uint64_t seed) {
  if (!(fraction >= 0.0 && fraction < 1.0)) {
    throw DataError("--val-fraction must be in [0, 1), got " + std::to_string(fraction));
  }
  const size_t n = docs.size();
  std::vector<bool> val(n, false);
  if (n == 0) return val;
  const long double threshold = static_cast<long double>(fraction) * 18446744073709551616.0L;
  std::vector<uint64_t> h(n);
  size_t n_val = 0;
  for (size_t i = 0; i < n; ++i) {
    h[i] = document_hash(docs[i].text, seed);
    val[i] = static_cast<long double>(h[i]) < threshold;
    n_val += val[i];
  }
  if (n_val == n) {  // keep at least one training document
    const size_t top = static_cast<size_t>(std::max_element(h.begin(), h.end()) - h.begin());
    val[top] = false;
    --n_val;
  }
  if (n_val == 0 && fraction > 0.0 && n >= 2) {  // and one validation document
    const size_t low = static_cast<size_t>(std::min_element(h.begin(), h.end()) - h.begin());
    val[low] = true;
  }
  return val;
}

// ---- tokenizer ---------------------------------------------------------------

Tokenizer Tokenizer::load(const std::string& path) {
  auto bytes = std::make_shared<std::string>(read_file(path, "tokenizer model"));
  auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
  const auto status = sp->LoadFromSerializedProto(*bytes);
  if (!status.ok()) {
    throw DataError("tokenizer model '" + path + "': not a SentencePiece model (" +
                    status.ToString() + ")");
  }
  Tokenizer t;
  t.sp_ = std::move(sp);
  t.bytes_ = std::move(bytes);
  return t;
}

Tokenizer Tokenizer::train_bpe(const std::vector<std::string_view>& lines, const BpeOptions& o) {
  if (std::all_of(lines.begin(), lines.end(), [](std::string_view l) { return l.empty(); })) {
    throw DataError("cannot train a tokenizer: no training text");
  }
  if (o.vocab_size < 1) throw DataError("--vocab must be positive, got " + std::to_string(o.vocab_size));
  // LLaMA-2's trainer options, scaled down; see the header.
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(o.vocab_size)},
      {"character_coverage", "1.0"},
      {"byte_fallback", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "true"},
      {"split_digits", "true"},
      {"allow_whitespace_only_pieces", "true"},
      {"max_sentencepiece_length", "16"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"input_sentence_size", "0"},  // every line, no sampling
      {"shuffle_input_sentence", "false"},
      {"num_threads", std::to_string(std::max(1, o.num_threads))},
      {"self_test_sample_size", "0"},
  };
  sentencepiece::SetRandomGeneratorSeed(kSpmSeed);
  sentencepiece::logging::SetMinLogLevel(o.verbose ? 0 : 1);
  LineIterator it(lines);
  auto bytes = std::make_shared<std::string>();
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, bytes.get());
  if (!status.ok()) {
    throw DataError("training a BPE tokenizer of vocabulary " + std::to_string(o.vocab_size) +
                    " failed: " + status.ToString());
  }
  auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
  const auto load = sp->LoadFromSerializedProto(*bytes);
  if (!load.ok()) throw DataError("the trained tokenizer does not load: " + load.ToString());
  Tokenizer t;
  t.sp_ = std::move(sp);
  t.bytes_ = std::move(bytes);
  return t;
}

int Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int Tokenizer::bos_id() const { return sp_->bos_id(); }
int Tokenizer::eos_id() const { return sp_->eos_id(); }

std::vector<uint32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  if (!status.ok()) throw DataError("tokenizer cannot encode text: " + status.ToString());
  return std::vector<uint32_t>(ids.begin(), ids.end());
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  const auto status = sp_->Decode(std::vector<int>(ids.begin(), ids.end()), &out);
  if (!status.ok()) throw DataError("tokenizer cannot decode ids: " + status.ToString());
  return out;
}

void Tokenizer::save(const std::string& path) const {
  try {
    checkpoint::write_file_atomically(path, *bytes_);
  } catch (const checkpoint::AtomicFileError& e) {
    throw DataError("tokenizer model '" + path + "': " + e.what());
  }
}

// ---- the pipeline ------------------------------------------------------------

TokenizeSummary tokenize_corpus(const TokenizeOptions& o) {
  if (o.inputs.empty()) throw DataError("no --input given");
  if (o.out_dir.empty()) throw DataError("no --out directory given");
  if (o.vocab_size < 0) throw DataError("--vocab must be positive, got " + std::to_string(o.vocab_size));
  if (o.num_threads < 1) throw DataError("--threads must be >= 1, got " + std::to_string(o.num_threads));
  if (!(o.val_fraction >= 0.0 && o.val_fraction < 1.0)) {
    throw DataError("--val-fraction must be in [0, 1), got " + std::to_string(o.val_fraction));
  }

  TokenizeSummary sum;
  const std::vector<std::string> files = list_input_files(o.inputs, &sum.skipped);
  sum.files = static_cast<int64_t>(files.size());
  const std::vector<Document> docs = read_documents(files);
  if (docs.empty()) {
    std::string in;
    for (const auto& i : o.inputs) in += (in.empty() ? "'" : ", '") + i + "'";
    throw DataError("the corpus is empty: no non-blank document in " + in + " (" +
                    std::to_string(files.size()) + " text file(s))");
  }
  const std::vector<bool> is_val = choose_validation(docs, o.val_fraction, o.seed);
  sum.documents = static_cast<int64_t>(docs.size());
  sum.val_documents = std::count(is_val.begin(), is_val.end(), true);
  sum.train_documents = sum.documents - sum.val_documents;

  // The tokenizer: loaded, or trained on the lines of the training documents.
  Tokenizer tok;
  if (!o.model_path.empty()) {
    tok = Tokenizer::load(o.model_path);
    if (o.vocab_size != 0 && o.vocab_size != tok.vocab_size()) {
      throw DataError("--vocab " + std::to_string(o.vocab_size) + " differs from the " +
                      std::to_string(tok.vocab_size()) + " pieces of --model '" + o.model_path + "'");
    }
  } else {
    std::vector<std::string_view> lines;
    for (size_t i = 0; i < docs.size(); ++i) {
      if (is_val[i]) continue;
      std::string_view t = docs[i].text;
      while (!t.empty()) {
        const size_t nl = t.find('\n');
        std::string_view line = t.substr(0, nl);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        lines.push_back(line);
        if (nl == std::string_view::npos) break;
        t.remove_prefix(nl + 1);
      }
    }
    tok = Tokenizer::train_bpe(lines, {o.vocab_size ? o.vocab_size : kDefaultVocab, o.num_threads, o.verbose});
    sum.trained = true;
  }
  sum.vocab_size = tok.vocab_size();
  sum.bos_id = tok.bos_id();
  if (sum.bos_id < 0) {
    throw DataError("tokenizer model" + (o.model_path.empty() ? std::string() : " '" + o.model_path + "'") +
                    " has no BOS piece; documents are separated by BOS");
  }
  sum.uint32_tokens = sum.vocab_size > 65536;

  // Encode every document, in parallel; ids[i] = [BOS] + pieces.
  std::vector<std::vector<uint32_t>> ids(docs.size());
  {
    std::atomic<size_t> next{0};
    std::mutex err_mu;
    std::string err;
    auto work = [&] {
      for (;;) {
        const size_t begin = next.fetch_add(64);
        if (begin >= docs.size()) return;
        const size_t end = std::min(docs.size(), begin + 64);
        for (size_t i = begin; i < end; ++i) {
          try {
            std::vector<uint32_t> p = tok.encode(docs[i].text);
            ids[i].reserve(p.size() + 1);
            ids[i].push_back(static_cast<uint32_t>(sum.bos_id));
            ids[i].insert(ids[i].end(), p.begin(), p.end());
          } catch (const std::exception& e) {
            std::lock_guard<std::mutex> lock(err_mu);
            if (err.empty()) err = "document at " + docs[i].source + ": " + e.what();
          }
        }
      }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < o.num_threads; ++t) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
    if (!err.empty()) throw DataError(err);
  }

  // Output directory; old shards go before new ones are written, so a
  // directory never mixes shards of two runs.
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec || !fs::is_directory(o.out_dir)) {
    throw DataError("--out '" + o.out_dir + "': cannot create directory" +
                    (ec ? ": " + ec.message() : std::string()));
  }
  const std::regex shard_re(R"((train|val)_[0-9]{3,}\.bin)");
  std::vector<std::string> old_shards;
  for (const auto& e : fs::directory_iterator(o.out_dir, ec)) {
    if (std::regex_match(e.path().filename().string(), shard_re)) old_shards.push_back(e.path().string());
  }
  std::sort(old_shards.begin(), old_shards.end());

  const std::string model_out = (fs::path(o.out_dir) / "tokenizer.model").string();
  const bool same_model = !o.model_path.empty() && fs::exists(model_out) &&
                          fs::equivalent(o.model_path, model_out, ec);
  if (!same_model) tok.save(model_out);
  sum.written.push_back(model_out);

  for (const std::string& p : old_shards) {
    if (::remove(p.c_str()) != 0) {
      throw DataError("cannot remove old shard '" + p + "': " + std::strerror(errno));
    }
  }

  for (const bool val : {false, true}) {
    const char* split = val ? "val" : "train";
    std::vector<uint32_t> buf;
    size_t shard = 0;
    auto write = [&](size_t begin, size_t end) {
      const std::string path = (fs::path(o.out_dir) / shard_name(split, shard++)).string();
      write_token_shard(path, std::vector<uint32_t>(buf.begin() + begin, buf.begin() + end),
                        sum.uint32_tokens);
      sum.written.push_back(path);
    };
    for (size_t i = 0; i < docs.size(); ++i) {
      if (is_val[i] != val) continue;
      (val ? sum.val_tokens : sum.train_tokens) += static_cast<int64_t>(ids[i].size());
      if (!buf.empty() && buf.size() + ids[i].size() > kShardTokens) {  // cut at a document boundary
        write(0, buf.size());
        buf.clear();
      }
      buf.insert(buf.end(), ids[i].begin(), ids[i].end());
      std::vector<uint32_t>().swap(ids[i]);
      size_t off = 0;  // a document longer than a shard is cut inside
      for (; buf.size() - off > kShardTokens; off += kShardTokens) write(off, off + kShardTokens);
      buf.erase(buf.begin(), buf.begin() + off);
    }
    if (!buf.empty()) write(0, buf.size());
  }
  for (const std::string& p : old_shards) {
    if (std::find(sum.written.begin(), sum.written.end(), p) == sum.written.end()) sum.removed.push_back(p);
  }
  return sum;
}

}  // namespace dyt::data
