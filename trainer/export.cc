#include "trainer/export.h"

#include "common/shape_text.h"
#include "configs/config.h"
#include "trainer/hf_model.h"
#include "trainer/param_layout.h"

namespace dyt::trainer {

ModelDims checkpoint_model_dims(const checkpoint::Checkpoint& ck) {
  const config::RunConfig cfg = config::parse_run_config(ck.run_config, ck.path + "/manifest.pbtxt (run_config)", {});
  return model_dims(cfg.model());
}

void export_checkpoint(const checkpoint::Checkpoint& ck, const ModelDims& dims, const std::string& out_dir) {
  // Every tensor is checked before anything is written.
  const ParamLayout layout(dims);
  for (const ParamEntry& e : layout.entries()) {
    if (!ck.has(e.name))
      throw checkpoint::CheckpointError("checkpoint '" + ck.path + "' has no tensor " + e.name +
                                        ", which its run config's model has");
    if (ck.shape(e.name) != e.global_shape)
      throw checkpoint::CheckpointError("checkpoint '" + ck.path + "': tensor " + e.name + " has shape " +
                                        shape_text(ck.shape(e.name)) + ", its run config's model has " +
                                        shape_text(e.global_shape));
  }
  write_hf_model(out_dir, dims, [&](const std::string& name, std::vector<float>& out) { out = ck.read_all(name); });
}

}  // namespace dyt::trainer
