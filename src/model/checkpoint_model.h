// The one Model implementation (internal to model/): config + weight views +
// whatever keeps the bytes alive (memory-mapped shards or owned buffers).
#ifndef SAFEROUTE_MODEL_CHECKPOINT_MODEL_H_
#define SAFEROUTE_MODEL_CHECKPOINT_MODEL_H_

#include <memory>
#include <string>
#include <vector>

#include "io/mapped_file.h"
#include "model/weights.h"

namespace saferoute {

class CheckpointModel final : public Model {
 public:
  // `storage` owns the memory every view in `weights` points into;
  // `mappings` are the read-only file mappings among it (owned by storage),
  // whose pages ReleaseWeightPages may drop.
  CheckpointModel(ModelConfig config, ModelWeights weights, std::shared_ptr<const void> storage,
                  std::vector<const MappedFile*> mappings = {});

  const ModelConfig& config() const override { return config_; }
  const ModelWeights& weights() const override { return weights_; }
  const std::string& fingerprint() const override { return fingerprint_; }
  size_t weight_bytes() const override { return weight_bytes_; }
  void ReleaseWeightPages(const std::byte* data, size_t n) const override;

 private:
  ModelConfig config_;
  ModelWeights weights_;
  std::shared_ptr<const void> storage_;
  std::vector<const MappedFile*> mappings_;
  std::string fingerprint_;
  size_t weight_bytes_ = 0;
};

// 64-bit FNV-1a over the canonical config JSON (torch_dtype cleared: it is
// informational) and, for every tensor in name-table order, its name, dtype,
// shape and bytes (all of a tensor up to 4 KiB, else 32 evenly spaced 64-byte
// samples including the first and last). Integers are hashed as little-endian
// bytes, so the value is the same on every machine and run, and a random model
// has the same fingerprint after WriteModelDirectory + LoadModel.
// Returned as 16 lower-case hex digits.
std::string ComputeFingerprint(const ModelConfig& config, const ModelWeights& weights);

}  // namespace saferoute

#endif  // SAFEROUTE_MODEL_CHECKPOINT_MODEL_H_
