#include "cli/guard_flags.h"

#include "guard/guard_format.h"

namespace saferoute::cli {

void AddGuardFlags(CLI::App& cmd, GuardFlags& flags, const std::string& prefix,
                   const std::string& what, bool model_required) {
  CLI::Option* model = cmd.add_option(
      "--" + prefix + "model", flags.model_dir,
      what + ": HF model directory (config.json, safetensors, tokenizer.json) or .gguf file");
  if (model_required) model->required();
  cmd.add_option("--" + prefix + "format", flags.format,
                 what + ": " + GuardFormatNameList() + " (default: guessed from the shape)");
  cmd.add_option("--" + prefix + "precision", flags.precision,
                 what +
                     ": auto (fastest guard-safe path) | fp32 (parity) | bf16 | int8 | int8-a16 "
                     "(int8 weights, 16-bit activations)")
      ->capture_default_str()
      ->check(CLI::IsMember(cpu::PrecisionNames()));
  cmd.add_option("--" + prefix + "batch", flags.batch, what + ": examples per forward pass")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  if (prefix.empty() || prefix == "small-") {
    // One thread setting per process: both guards share the cores.
    cmd.add_option("--threads", flags.threads, "CPU threads (0: all cores)")->capture_default_str();
  }
}

absl::StatusOr<LocalGuardOptions> ToLocalGuardOptions(const GuardFlags& flags) {
  LocalGuardOptions options;
  options.model_dir = flags.model_dir;
  options.format = flags.format;
  options.engine.num_threads = flags.threads;
  options.max_batch = flags.batch;
  SR_ASSIGN_OR_RETURN(options.engine.precision, cpu::ParsePrecision(flags.precision));
  return options;
}

std::string DescribeCompute(const Guard& guard) {
  const Guard::Compute c = guard.compute();
  if (c.path.empty()) return "remote";
  return absl::StrCat(c.path, " (", c.impl, ", isa ", c.isa, ")");
}

int64_t ComputeParamsPerToken(const ModelConfig& c) {
  const int64_t q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  const int64_t per_layer =
      c.hidden_size * (q + 2 * kv) + q * c.hidden_size + 3 * c.hidden_size * c.intermediate_size;
  return c.num_layers * per_layer + c.vocab_size * c.hidden_size;
}

}  // namespace saferoute::cli
