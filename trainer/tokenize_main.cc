// dyt-tokenize: text corpus -> SentencePiece tokenizer -> llm.c token shards.
//
//   dyt-tokenize --input FILE_OR_DIR [--input ...] --out DIR [--vocab N]
//                [--model tokenizer.model] [--val-fraction 0.05] [--seed S]
//                [--threads 2] [--verbose]
//
// Without --model it trains a SentencePiece BPE tokenizer (LLaMA's options,
// vocabulary --vocab, default 4096) on the training documents and writes
// DIR/tokenizer.model; with --model it uses that model (e.g. LLaMA-2's) and
// copies it to DIR/tokenizer.model. Then it writes DIR/train_000.bin and
// DIR/val_000.bin (llm.c format), each document prefixed by BOS. The corpus
// format, split and shard layout are described in trainer/data/tokenizer.h.
//
// Exit status: 0 success, 1 bad data (missing input, empty corpus,
// unreadable model, I/O error), 2 bad command line.
//
// This program deliberately links neither protobuf nor dyt_trainer:
// libsentencepiece carries its own copy of protobuf-lite, and loading both
// into one process is asking for symbol clashes.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/data/tokenizer.h"

namespace {

constexpr const char* kName = "dyt-tokenize";

constexpr const char* kUsage =
    "usage: dyt-tokenize --input FILE_OR_DIR [--input ...] --out DIR [--vocab N]\n"
    "                    [--model tokenizer.model] [--val-fraction F] [--seed S]\n"
    "                    [--threads N] [--verbose]\n"
    "  --input         text file, or directory of text files (repeatable); documents are\n"
    "                  separated by lines holding only '%' (fortune format)\n"
    "  --out           output directory: tokenizer.model, train_000.bin, val_000.bin\n"
    "  --vocab         BPE vocabulary size to train (default 4096); with --model it must\n"
    "                  match the model\n"
    "  --model         use this SentencePiece model instead of training one\n"
    "  --val-fraction  share of documents held out for validation, in [0, 1) (default 0.05)\n"
    "  --seed          seed of the train/validation split (default 1234)\n"
    "  --threads       threads for training and encoding (default 2)\n"
    "  --verbose       show SentencePiece's training log\n";

struct UsageError : std::runtime_error {
  using runtime_error::runtime_error;
};

int64_t parse_int(const std::string& opt, const std::string& v, int64_t lo, int64_t hi) {
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno == ERANGE || x < lo || x > hi) {
    throw UsageError("--" + opt + " '" + v + "': expected an integer in [" + std::to_string(lo) +
                     ", " + std::to_string(hi) + "]");
  }
  return x;
}

uint64_t parse_seed(const std::string& v) {
  errno = 0;
  char* end = nullptr;
  const unsigned long long x = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || v[0] == '-' || *end != '\0' || errno == ERANGE) {
    throw UsageError("--seed '" + v + "': expected a non-negative integer < 2^64");
  }
  return x;
}

double parse_fraction(const std::string& v) {
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || errno == ERANGE || !(x >= 0.0 && x < 1.0)) {
    throw UsageError("--val-fraction '" + v + "': expected a number in [0, 1)");
  }
  return x;
}

// Returns false when --help was asked for.
bool parse_args(int argc, char** argv, dyt::data::TokenizeOptions& o) {
  std::vector<std::string> seen;
  auto once = [&](const std::string& name) {
    for (const auto& s : seen) {
      if (s == name) throw UsageError("option --" + name + " given more than once");
    }
    seen.push_back(name);
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") return false;
    if (arg.rfind("--", 0) != 0) throw UsageError("unexpected argument '" + arg + "'");
    std::string name = arg.substr(2), value;
    bool has_value = false;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (name == "verbose") {
      if (has_value) throw UsageError("flag --verbose takes no value");
      once(name);
      o.verbose = true;
      continue;
    }
    if (name != "input" && name != "out" && name != "vocab" && name != "model" &&
        name != "val-fraction" && name != "seed" && name != "threads") {
      throw UsageError("unknown option --" + name);
    }
    if (!has_value) {
      if (i + 1 >= argc) throw UsageError("option --" + name + " needs a value");
      value = argv[++i];
    }
    if (name == "input") {
      if (value.empty()) throw UsageError("--input needs a non-empty path");
      o.inputs.push_back(value);
      continue;
    }
    once(name);
    if (name == "out") {
      if (value.empty()) throw UsageError("--out needs a non-empty path");
      o.out_dir = value;
    } else if (name == "vocab") {
      o.vocab_size = static_cast<int>(parse_int(name, value, 1, 1 << 30));
    } else if (name == "model") {
      if (value.empty()) throw UsageError("--model needs a non-empty path");
      o.model_path = value;
    } else if (name == "val-fraction") {
      o.val_fraction = parse_fraction(value);
    } else if (name == "seed") {
      o.seed = parse_seed(value);
    } else if (name == "threads") {
      o.num_threads = static_cast<int>(parse_int(name, value, 1, 1024));
    }
  }
  if (o.inputs.empty()) throw UsageError("--input is required");
  if (o.out_dir.empty()) throw UsageError("--out is required");
  return true;
}

int run(int argc, char** argv) {
  dyt::data::TokenizeOptions o;
  if (!parse_args(argc, argv, o)) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  const dyt::data::TokenizeSummary s = dyt::data::tokenize_corpus(o);
  for (const auto& sk : s.skipped) std::printf("skipped %s\n", sk.c_str());
  if (s.trained) {
    std::printf("tokenizer: trained SentencePiece BPE, %d pieces (bos %d)\n", s.vocab_size, s.bos_id);
  } else {
    std::printf("tokenizer: %s, %d pieces (bos %d)\n", o.model_path.c_str(), s.vocab_size, s.bos_id);
  }
  const int asked = o.vocab_size ? o.vocab_size : 4096;
  if (s.trained && s.vocab_size != asked) {
    std::printf("note: the corpus gave %d pieces, not the %d asked for\n", s.vocab_size, asked);
  }
  std::printf("documents: %lld from %lld file(s): train %lld, val %lld (val-fraction %g, seed %llu)\n",
              static_cast<long long>(s.documents), static_cast<long long>(s.files),
              static_cast<long long>(s.train_documents), static_cast<long long>(s.val_documents),
              o.val_fraction, static_cast<unsigned long long>(o.seed));
  std::printf("tokens: train %lld, val %lld (BOS included; %s)\n",
              static_cast<long long>(s.train_tokens), static_cast<long long>(s.val_tokens),
              s.uint32_tokens ? "uint32" : "uint16");
  for (const auto& r : s.removed) std::printf("removed stale %s\n", r.c_str());
  for (const auto& w : s.written) std::printf("wrote %s\n", w.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: usage error: %s (see --help)\n", kName, e.what());
    return 2;
  } catch (const dyt::data::DataError& e) {
    std::fprintf(stderr, "%s: data error: %s\n", kName, e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: out of memory\n", kName);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", kName, e.what());
  }
  return 1;
}
