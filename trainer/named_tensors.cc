#include "trainer/named_tensors.h"

#include "common/shape_text.h"

#include <algorithm>

namespace dyt::trainer {

std::vector<checkpoint::TensorRef> named_views(const ParamLayout& layout, const float* buffer) {
  std::vector<checkpoint::TensorRef> refs;
  for (const ParamEntry& e : layout.entries()) refs.push_back({e.name, e.shape, buffer + e.offset});
  return refs;
}

void load_named(const ParamLayout& layout,
                const std::map<std::string, checkpoint::LoadedTensor>& tensors,
                const std::string& source, float* buffer) {
  for (const ParamEntry& e : layout.entries()) {
    auto it = tensors.find(e.name);
    if (it == tensors.end())
      throw checkpoint::CheckpointError(source + ": missing tensor " + e.name);
    if (it->second.shape != e.shape)
      throw checkpoint::CheckpointError(source + ": tensor " + e.name + " has shape " +
                                        shape_text(it->second.shape) + ", the model expects " +
                                        shape_text(e.shape));
    std::copy(it->second.data.begin(), it->second.data.end(), buffer + e.offset);
  }
  for (const auto& [name, t] : tensors)
    if (!layout.find(name))
      throw checkpoint::CheckpointError(source + ": tensor " + name +
                                        " is not part of this model (check the config's norm, "
                                        "norm_bias and embed_scale)");
}

}  // namespace dyt::trainer
