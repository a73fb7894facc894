// The tokenizer library and dyt-tokenize: corpus reading and splitting, BPE
// training, shards that decode back to the text, --model reuse, and errors.
#include "trainer/data/tokenizer.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "tests/common/scratch_dir_test.h"
#include "trainer/data/token_shard.h"

namespace dyt::data {
namespace {

namespace fs = std::filesystem;
using testing_support::read_bytes;
using testing_support::write_bytes;

struct CliResult {
  int rc = -1;
  std::string out, err;
};

// A few KB of fortune-format text: documents of 1-4 lines separated by "%"
// lines, with indentation, tabs, digits, non-ASCII letters and blank
// documents. Deterministic (mt19937's output is specified by the standard).
std::string make_corpus(uint32_t seed, int docs) {
  static const char* words[] = {"the",   "quick",  "brown", "fox",     "jumps",  "over", "lazy",
                                "dog",   "and",    "a",     "program", "never",  "stops", "until",
                                "it",    "is",     "done",  "café",    "naïve",  "über", "2024",
                                "42",    "token",  "shard", "tanh",    "alpha",  "of",   "to",
                                "data,", "model.", "Why?",  "Yes!",    "(sic)",  "—",    "😀"};
  const size_t nw = std::size(words);
  std::mt19937 rng(seed);
  std::string s;
  for (int d = 0; d < docs; ++d) {
    if (d > 0) s += "%\n";
    if (rng() % 17 == 0) {  // a blank document: dropped by the reader
      s += "  \n";
      continue;
    }
    const int lines = 1 + static_cast<int>(rng() % 4);
    for (int l = 0; l < lines; ++l) {
      const uint32_t style = rng() % 8;
      if (style == 0) s += "\t";
      if (style == 1) s += "    -- ";
      const int n = 3 + static_cast<int>(rng() % 10);
      for (int w = 0; w < n; ++w) {
        if (w > 0) s += (rng() % 13 == 0) ? "  " : " ";
        s += words[rng() % nw];
      }
      s += "\n";
    }
  }
  return s;
}

class TokenizeTest : public testing_support::ScratchDirTest {
 protected:
  TokenizeTest() : ScratchDirTest("tokenize") {}

  // A corpus directory in the shape of /usr/share/games/fortunes.
  fs::path make_corpus_dir() {
    const fs::path c = dir_ / "corpus";
    write_bytes(c / "first", make_corpus(1, 50));
    write_bytes(c / "sub" / "second", make_corpus(2, 40));
    // The literal's 16 bytes (4 binary, then text): a length of 18 read past
    // its end (ASan, global-buffer-overflow).
    write_bytes(c / "first.dat", std::string("\0\0\0\2binary index", 16));  // skipped: .dat
    fs::create_symlink("first", c / "first.u8");                            // skipped: link, .u8
    write_bytes(c / "off" / "rude", "offensive fortune\n%\nanother\n");      // skipped: off/
    write_bytes(c / ".hidden", "hidden\n");                                  // skipped: hidden
    write_bytes(c / "latin1", "caf\xe9\n");                                  // skipped: not UTF-8
    return c;
  }

  CliResult cli(const std::string& args) {
    CliResult r;
    const fs::path out = dir_ / "cli.out", err = dir_ / "cli.err";
    const std::string cmd = std::string(DYT_TOKENIZE_BIN) + " " + args + " >" + out.string() +
                            " 2>" + err.string();
    const int status = std::system(cmd.c_str());
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_bytes(out);
    r.err = read_bytes(err);
    return r;
  }
};

// ---- corpus --------------------------------------------------------------------

TEST(SplitDocuments, SeparatorsBlanksAndCrlf) {
  auto d = split_documents("one\ntwo\n%\n\n  \n%\nthree\r\n%\r\n  indented\n\ttab\n", "f");
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].text, "one\ntwo");
  EXPECT_EQ(d[0].source, "f:1");
  EXPECT_EQ(d[1].text, "three");
  EXPECT_EQ(d[1].source, "f:7");
  EXPECT_EQ(d[2].text, "  indented\n\ttab");
  EXPECT_EQ(d[2].source, "f:9");
  // A line that only starts with % is text; a file without separators is one document.
  d = split_documents("50% off\n%%\nno newline at end", "g");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].text, "50% off\n%%\nno newline at end");
  EXPECT_TRUE(split_documents("", "e").empty());
  EXPECT_TRUE(split_documents("%\n%\n", "e").empty());
}

TEST(ChooseValidation, DeterministicByContentAndSeed) {
  std::vector<Document> docs;
  for (int i = 0; i < 2000; ++i) docs.push_back({"document " + std::to_string(i % 1000), ""});
  const auto a = choose_validation(docs, 0.1, 5), b = choose_validation(docs, 0.1, 5);
  const auto c = choose_validation(docs, 0.1, 6);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  const auto n_val = std::count(a.begin(), a.end(), true);
  EXPECT_GT(n_val, 120);
  EXPECT_LT(n_val, 280);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(a[i], a[i + 1000]) << "duplicates split apart";
  const auto none = choose_validation(docs, 0.0, 5);
  EXPECT_EQ(std::count(none.begin(), none.end(), true), 0);
  // Small corpora still get one document on each side.
  std::vector<Document> two = {{"x", ""}, {"y", ""}};
  for (double f : {0.01, 0.99}) {
    const auto v = choose_validation(two, f, 1);
    EXPECT_EQ(std::count(v.begin(), v.end(), true), 1) << f;
  }
  EXPECT_THROW(choose_validation(docs, 1.0, 5), DataError);
  EXPECT_THROW(choose_validation(docs, -0.1, 5), DataError);
}

TEST_F(TokenizeTest, ListsTextFilesLikeFortune) {
  const fs::path c = make_corpus_dir();
  std::vector<std::string> skipped;
  const auto files = list_input_files({c.string()}, &skipped);
  EXPECT_EQ(files, (std::vector<std::string>{(c / "first").string(), (c / "sub" / "second").string()}));
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("latin1"), std::string::npos);
  EXPECT_NE(skipped[0].find("not UTF-8"), std::string::npos);
  // A file named directly must be text.
  const auto docs = [&] { return read_documents({(c / "latin1").string()}); };
  EXPECT_THROW(docs(), DataError);
  EXPECT_THROW(list_input_files({(dir_ / "missing").string()}, nullptr), DataError);
}

// ---- dyt-tokenize --------------------------------------------------------------

// The documents of each split as dyt-tokenize writes them: decoded shard
// segments between BOS tokens.
std::vector<std::string> decode_shard(const Tokenizer& tok, const fs::path& shard) {
  TokenShard s = TokenShard::open(shard.string());
  std::vector<int32_t> all(static_cast<size_t>(s.size()));
  s.read(0, s.size(), all.data());
  std::vector<std::string> docs;
  EXPECT_FALSE(all.empty());
  EXPECT_EQ(all[0], tok.bos_id());
  std::vector<int32_t> cur;
  for (size_t i = 1; i <= all.size(); ++i) {
    if (i == all.size() || all[i] == tok.bos_id()) {
      docs.push_back(tok.decode(cur));
      cur.clear();
    } else {
      cur.push_back(all[i]);
    }
  }
  return docs;
}

TEST_F(TokenizeTest, TrainsBpeAndShardsDecodeBackToTheText) {
  const fs::path c = make_corpus_dir(), out = dir_ / "out";
  const CliResult r = cli("--input " + c.string() + " --out " + out.string() +
                          " --vocab 400 --val-fraction 0.2 --seed 7");
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("tokens: train"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("skipped " + (c / "latin1").string()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wrote " + (out / "val_000.bin").string()), std::string::npos) << r.out;

  const Tokenizer tok = Tokenizer::load((out / "tokenizer.model").string());
  EXPECT_EQ(tok.vocab_size(), 400);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);

  std::vector<std::string> skipped;
  const auto docs = read_documents(list_input_files({c.string()}, &skipped));
  const auto is_val = choose_validation(docs, 0.2, 7);
  std::vector<std::string> want_train, want_val;
  for (size_t i = 0; i < docs.size(); ++i) (is_val[i] ? want_val : want_train).push_back(docs[i].text);
  ASSERT_FALSE(want_val.empty());
  EXPECT_EQ(decode_shard(tok, out / "train_000.bin"), want_train);
  EXPECT_EQ(decode_shard(tok, out / "val_000.bin"), want_val);
  EXPECT_TRUE(TokenShard::open((out / "train_000.bin").string()).is_uint16());
  // Every byte is encodable: an unseen character becomes byte pieces, not <unk>.
  const auto ids = tok.encode("Ω");
  for (uint32_t id : ids) EXPECT_NE(id, 0u);
  EXPECT_EQ(tok.decode(std::vector<int32_t>(ids.begin(), ids.end())), "Ω");
}

TEST_F(TokenizeTest, ExistingModelGivesIdenticalShardsAndTrainingIsDeterministic) {
  const fs::path c = make_corpus_dir(), a = dir_ / "a", b = dir_ / "b", again = dir_ / "again";
  const std::string common = "--input " + (c / "first").string() + " --input " + (c / "sub").string();
  ASSERT_EQ(cli(common + " --out " + a.string() + " --vocab 400").rc, 0);
  const CliResult r = cli(common + " --out " + b.string() + " --model " + (a / "tokenizer.model").string());
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const char* f : {"tokenizer.model", "train_000.bin", "val_000.bin"}) {
    EXPECT_TRUE(read_bytes(a / f) == read_bytes(b / f)) << f;
  }
  // Training again gives the same model; shards of an earlier, larger run are removed.
  write_bytes(again / "train_001.bin", "stale");
  const CliResult r2 = cli(common + " --out " + again.string() + " --vocab=400");
  ASSERT_EQ(r2.rc, 0) << r2.err;
  EXPECT_FALSE(fs::exists(again / "train_001.bin"));
  EXPECT_NE(r2.out.find("removed stale"), std::string::npos) << r2.out;
  for (const char* f : {"tokenizer.model", "train_000.bin", "val_000.bin"}) {
    EXPECT_TRUE(read_bytes(a / f) == read_bytes(again / f)) << f;
  }
  // Another thread count gives the same pieces (the model file records the
  // count in its trainer spec, so only the shards are compared).
  ASSERT_EQ(cli(common + " --out " + again.string() + " --vocab 400 --threads 1").rc, 0);
  for (const char* f : {"train_000.bin", "val_000.bin"}) {
    EXPECT_TRUE(read_bytes(a / f) == read_bytes(again / f)) << f;
  }
  // --model pointing at the output's own tokenizer.model works too.
  EXPECT_EQ(cli(common + " --out " + a.string() + " --model " + (a / "tokenizer.model").string()).rc, 0);
  EXPECT_TRUE(read_bytes(a / "train_000.bin") == read_bytes(b / "train_000.bin"));
}

TEST_F(TokenizeTest, ErrorsAreOneClearMessage) {
  const fs::path c = make_corpus_dir(), out = dir_ / "out";
  const std::string in = " --input " + (c / "first").string();

  CliResult r = cli("--input " + (dir_ / "missing").string() + " --out " + out.string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find((dir_ / "missing").string() + "': no such file"), std::string::npos) << r.err;

  write_bytes(dir_ / "blank" / "f", "\n%\n  \n%\n");
  r = cli("--input " + (dir_ / "blank").string() + " --out " + out.string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("corpus is empty"), std::string::npos) << r.err;

  write_bytes(dir_ / "garbage.model", "this is not a model");
  r = cli(in + " --out " + out.string() + " --model " + (dir_ / "garbage.model").string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("garbage.model': not a SentencePiece model"), std::string::npos) << r.err;

  r = cli(in + " --out " + out.string() + " --model " + (dir_ / "none.model").string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("none.model': cannot read"), std::string::npos) << r.err;

  r = cli(in + " --out " + out.string() + " --vocab 100");  // < 256 bytes + specials + chars
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("data error: training a BPE tokenizer of vocabulary 100 failed"), std::string::npos)
      << r.err;

  ASSERT_EQ(cli(in + " --out " + out.string() + " --vocab 400").rc, 0);
  r = cli(in + " --out " + (dir_ / "o2").string() + " --vocab 500 --model " + (out / "tokenizer.model").string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--vocab 500 differs from the 400 pieces"), std::string::npos) << r.err;

  for (const std::string& bad : {std::string("--out x"), in, in + " --out x --vocab abc",
                                 in + " --out x --frobnicate 1", in + " --out x --val-fraction 1",
                                 in + " --out x --out y", in + " stray"}) {
    r = cli(bad);
    EXPECT_EQ(r.rc, 2) << bad << ": " << r.err;
    EXPECT_NE(r.err.find("dyt-tokenize: usage error: "), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_EQ(cli("--help").rc, 0);
}

}  // namespace
}  // namespace dyt::data
