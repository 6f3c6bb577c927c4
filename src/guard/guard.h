// The Guard API: (prompt, optional response or conversation, optional policy)
// -> verdict, p(unsafe), categories, router feature, timings.
//
// This header is the contract between the engine side (model/, tokenizer/,
// guard/ implementation) and its users (server/, eval/ `score`, cli/). It is
// small on purpose: a Guard can be an in-process model (LocalGuard, see
// local_guard.h) or a remote inference server (cascade/remote_guard.h).
#ifndef SAFEROUTE_GUARD_GUARD_H_
#define SAFEROUTE_GUARD_GUARD_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "util/status.h"

namespace saferoute {

// One turn of a conversation under moderation.
struct Turn {
  enum class Role { kUser, kAssistant };
  Role role = Role::kUser;
  std::string content;
};

// A safety policy: the category list shown to the guard. Empty `categories`
// means the guard format's default list (S1-S13 for Llama-Guard-3-1B,
// S1-S14 for -8B).
struct Policy {
  std::vector<std::pair<std::string, std::string>> categories;  // {"S1", "Violent Crimes."}
  std::vector<std::string> excluded;                            // keys to leave out
};

struct GuardRequest {
  // Either `conversation` (alternating user/assistant, starting with user) or
  // `prompt` + optional `response`. Prompt classification judges the last user
  // turn; response classification (a final assistant turn) judges the response.
  std::string prompt;
  std::optional<std::string> response;
  std::vector<Turn> conversation;
  std::optional<Policy> policy;
  bool want_categories = false;  // S-codes from a short greedy decode (unsafe verdicts only)
  bool want_feature = true;      // return the router feature
};

struct GuardTimings {
  double tokenize_ms = 0;
  double forward_ms = 0;
  double decode_ms = 0;
  int decode_steps = 0;  // forward passes the decode ran for this input (0: none ran)
};

struct GuardVerdict {
  bool unsafe = false;      // p_unsafe > threshold (0.5, strict)
  float p_unsafe = 0;       // two-way softmax over {safe, unsafe} (paper's choice)
  float p_unsafe_full = 0;  // full-vocabulary softmax probability of "unsafe"
  float p_safe_full = 0;    // full-vocabulary softmax probability of "safe"
  float logit_safe = 0;
  float logit_unsafe = 0;
  // Categories from the greedy decode, e.g. {"S1","S10"}; only if asked and
  // the verdict is unsafe (a safe verdict has none: no decode runs for it).
  std::vector<std::string> categories;
  std::vector<int32_t> generated_ids;  // the greedy decode, if one ran
  // Set when a decode ran and its text did not parse as
  // "safe" / "unsafe\nS1,S2": the raw text is kept, nothing is guessed.
  std::optional<std::string> unparsed_output;
  std::vector<float> feature;  // final hidden state (after last norm) at the last position
  int n_tokens = 0;            // prompt tokens, including the appended verdict position
  GuardTimings timings;
};

// Thread safety: implementations must allow concurrent Classify calls from
// several threads (they may serialise internally).
class Guard {
 public:
  virtual ~Guard() = default;
  // Classifies a batch; result i belongs to request i. A bad request (e.g.
  // over the token limit) fails the whole call with a message naming its index.
  virtual absl::StatusOr<std::vector<GuardVerdict>> Classify(
      const std::vector<GuardRequest>& requests) = 0;
  // Dimension of GuardVerdict::feature (hidden size), 0 if the guard gives none.
  virtual int feature_dim() const = 0;
  // Identifies the model and the layer the features come from; routers
  // trained on one fingerprint refuse features of another.
  virtual std::string fingerprint() const = 0;
  // The model's name for logs and responses ("Llama-Guard-3-1B", a remote
  // server's model id): never a path or an address, since responses carry it.
  virtual std::string name() const = 0;
  // The registered guard format (guard/guard_format.h) whose category codes
  // the verdicts name ("llama-guard-3-8b"); empty when they name none. The
  // service maps codes to OpenAI moderation keys through it.
  virtual std::string format_name() const { return ""; }
  // Where the model runs, for logs and the service's /metrics: the engine's
  // GEMM path ("int8", "bf16-native", ...), the oneDNN implementation and the
  // ISA (cpu/dispatch.h). Empty for guards that run elsewhere (remote).
  struct Compute {
    std::string path, impl, isa;
  };
  virtual Compute compute() const { return {}; }
  // Whether the guard can answer now, for readiness probes: a guard on a
  // remote server asks it (cheaply); an in-process guard is always ready.
  virtual absl::Status Ping() { return absl::OkStatus(); }
};

}  // namespace saferoute

#endif  // SAFEROUTE_GUARD_GUARD_H_
