// Text corpora -> SentencePiece tokenizer -> llm.c token shards: the library
// behind dyt-tokenize (trainer/tokenize_main.cc).
//
// Corpus. Inputs are files or directories. A directory means every regular
// file under it, recursively, in sorted path order, except: hidden entries
// (name starting with '.'), symbolic links, files ending in .dat or .u8 and
// subdirectories named `off` (the index files, UTF-8 aliases and offensive
// set of the `fortune` format, so /usr/share/games/fortunes works as is), and
// files that are not UTF-8 text (skipped with a note). A file named on the
// command line must be UTF-8 text. Each file is split into documents at lines
// holding only "%" (fortune's separator); a file without such lines is one
// document. Documents keep their text exactly (inner newlines included, the
// newline before a separator removed); blank documents are dropped.
//
// Split. A document goes to validation iff a 64-bit hash of (seed, its text)
// falls below fraction * 2^64: deterministic, independent of file order, and
// identical documents (the fortune files repeat some) always land on the same
// side. If that leaves one side empty while there are >= 2 documents and
// 0 < fraction < 1, the document with the lowest (or highest) hash moves over.
//
// Tokenizer. Either trained here (SentencePiece BPE, LLaMA's options:
// byte_fallback, identity normalization, whitespace kept, digits split,
// unk 0 / bos 1 / eos 2 / no pad; character_coverage 1.0; every training line
// used, unshuffled, so training is deterministic) on the lines of the
// *training* documents only, or loaded from an existing model (a LLaMA-2
// tokenizer.model works unchanged).
//
// Shards. Each document is encoded as [BOS] + pieces (LLaMA-style; no EOS)
// and the documents of each split are concatenated in corpus order into
// OUT/train_000.bin, OUT/val_000.bin (a new shard every 100M tokens, at a
// document boundary), uint16 when vocab_size <= 65536, else uint32.
//
// All failures are DataError (trainer/data/token_shard.h) with one message
// naming the file or option.
//
// Linking: dyt_tokenizer links libsentencepiece, which embeds its own
// protobuf-lite 3.14. A process that also links the system libprotobuf
// (dyt_configs, hence dyt_trainer and dyt-train) aborts at start-up with a
// protobuf version error or crashes. So nothing that links dyt_configs may
// link dyt_tokenizer; the loader (dyt_data) does not need it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "trainer/data/token_shard.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace dyt::data {

// One document of a corpus; `source` is "path:line" of its first line.
struct Document {
  std::string text;
  std::string source;
};

// The files named by `inputs` (see the header comment). `skipped` gets
// "path (reason)" for each non-text file left out of a directory. DataError
// when an input does not exist or cannot be read.
std::vector<std::string> list_input_files(const std::vector<std::string>& inputs,
                                          std::vector<std::string>* skipped);

// Splits the text of one file (named `path` in sources) into documents.
std::vector<Document> split_documents(std::string_view text, const std::string& path);

// Reads and splits `files` in order. DataError when one cannot be read or is
// not UTF-8 text (the message gives the byte offset).
std::vector<Document> read_documents(const std::vector<std::string>& files);

// True where document i goes to validation (see "Split" above).
// DataError unless 0 <= fraction < 1.
std::vector<bool> choose_validation(const std::vector<Document>& docs, double fraction,
                                    uint64_t seed);

struct BpeOptions {
  int vocab_size = 4096;
  int num_threads = 2;
  bool verbose = false;  // SentencePiece's own progress log on stderr
};

// A loaded SentencePiece model. Cheap to copy (shared, immutable);
// encode/decode are thread-safe.
class Tokenizer {
 public:
  // DataError naming `path` when it cannot be read or is not a model.
  static Tokenizer load(const std::string& path);
  // Trains a BPE model on `lines` (one sentence each; empty ones ignored).
  // DataError with SentencePiece's reason on failure (e.g. a vocabulary too
  // small for the 256 byte pieces, 3 specials and every character seen).
  static Tokenizer train_bpe(const std::vector<std::string_view>& lines, const BpeOptions& options);

  int vocab_size() const;
  int bos_id() const;  // -1 when the model has none
  int eos_id() const;
  // Pieces of `text`, without BOS/EOS.
  std::vector<uint32_t> encode(std::string_view text) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  // The model file's bytes (what save() writes).
  const std::string& serialized() const { return *bytes_; }
  // Writes the model to `path` all or nothing (checkpoint/atomic_file.h).
  void save(const std::string& path) const;

 private:
  std::shared_ptr<const sentencepiece::SentencePieceProcessor> sp_;
  std::shared_ptr<const std::string> bytes_;
};

struct TokenizeOptions {
  std::vector<std::string> inputs;  // files or directories
  std::string out_dir;
  int vocab_size = 0;         // 0: 4096 when training; the model's size with model_path
  std::string model_path;     // "" = train a BPE model on the training documents
  double val_fraction = 0.05;
  uint64_t seed = 1234;       // split seed
  int num_threads = 2;        // SentencePiece training and encoding
  bool verbose = false;
};

struct TokenizeSummary {
  int64_t files = 0;
  std::vector<std::string> skipped;  // "path (reason)"
  int64_t documents = 0, train_documents = 0, val_documents = 0;
  int64_t train_tokens = 0, val_tokens = 0;  // BOS included
  int vocab_size = 0;
  int bos_id = -1;
  bool trained = false;                       // false: loaded from model_path
  bool uint32_tokens = false;
  std::vector<std::string> written;           // tokenizer.model and shards, in order
  std::vector<std::string> removed;           // stale shards of an earlier run
};

// The whole of dyt-tokenize: reads, splits, trains or loads, encodes, writes
// OUT/tokenizer.model (a copy of model_path's bytes when given) and the
// shards; removes stale OUT/{train,val}_NNN.bin beyond those written.
// DataError on any failure (missing input, empty corpus, unreadable model,
// vocab_size given and different from the model's, I/O errors).
TokenizeSummary tokenize_corpus(const TokenizeOptions& options);

}  // namespace dyt::data
