// dyt-export CHECKPOINT OUT_DIR: a consolidated Hugging Face model
// (model.safetensors + config.json) from a checkpoint saved under any
// layout. CHECKPOINT is a step directory (step-XXXXXXXX) or a checkpoint
// root, whose latest checkpoint is taken. Exit 0, 1 for a damaged or
// missing checkpoint (the message names the file), 2 for a wrong command
// line.
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include "checkpoint/checkpoint.h"
#include "configs/config.h"
#include "trainer/export.h"
#include "trainer/program.h"

int main(int argc, char** argv) {
  return dyt::trainer::run_program("dyt-export", [&] {
    if (argc != 3)
      throw dyt::config::ConfigError("usage: dyt-export CHECKPOINT_DIR OUT_DIR (a step-XXXXXXXX directory, or a "
                                     "checkpoint.dir whose latest checkpoint is exported)");
    const std::string in = argv[1], out = argv[2];
    namespace ck = dyt::checkpoint;
    std::optional<ck::Checkpoint> c;
    if (std::filesystem::exists(std::filesystem::path(in) / "manifest.pbtxt")) {
      c = ck::load_checkpoint(in);
    } else {
      c = ck::load_latest_checkpoint(in);
      if (!c) throw ck::CheckpointError("'" + in + "' holds no checkpoint (no manifest.pbtxt, no step-* directory)");
    }
    dyt::trainer::export_checkpoint(*c, dyt::trainer::checkpoint_model_dims(*c), out);
    std::printf("dyt-export: %s (step %lld, %zu files) -> %s/model.safetensors, config.json\n", c->path.c_str(),
                static_cast<long long>(c->progress.step), c->files(), out.c_str());
    return 0;
  });
}
