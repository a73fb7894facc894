// libFuzzer target: run configs (configs/config.h) as the programs read them:
// parse_cli over the command line, then load_run_config(file, --set
// overrides), then resolved() and to_text() for the run's log.
//
// Input: NUL-separated chunks. Chunk 0 is the config file's text; the other
// chunks are command-line arguments after the program name (e.g. "--set",
// "train.lr=1e-3"). Bad input must throw ConfigError; an accepted config,
// resolved and printed, must load again (the text a run records in its
// checkpoints and run directory is itself a valid config).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "configs/cli.h"
#include "configs/config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace cfg = dyt::config;
  static const std::string path = (dyt::fuzz::scratch_dir() / "run.pbtxt").string();
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  std::vector<std::string> chunks;
  size_t start = 0;
  while (true) {
    const size_t nul = in.find('\0', start);
    chunks.emplace_back(in.substr(start, nul == std::string_view::npos ? std::string_view::npos : nul - start));
    if (nul == std::string_view::npos) break;
    start = nul + 1;
  }
  dyt::fuzz::write_file(path, chunks[0]);
  std::vector<char*> argv{const_cast<char*>("dyt-fuzz")};
  for (size_t i = 1; i < chunks.size(); ++i) argv.push_back(chunks[i].data());

  dyt::fuzz::expect_only<cfg::ConfigError>("load_run_config", [&] {
    const cfg::CliArgs args = cfg::parse_cli(int(argv.size()), argv.data(), {}, {"json"});
    const cfg::RunConfig c = cfg::load_run_config(path, args.overrides);
    const std::string text = cfg::to_text(cfg::resolved(c));
    try {
      (void)cfg::parse_run_config(text, "resolved", {});
    } catch (const cfg::ConfigError& e) {
      dyt::fuzz::finding("an accepted config, resolved and printed, does not load again: " +
                         std::string(e.what()) + "\n" + text);
    }
  });
  return 0;
}
