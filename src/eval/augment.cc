#include "eval/augment.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <unordered_set>

#include "eval/csv.h"
#include "eval/progress.h"
#include "httplib.h"
#include "nlohmann/json.hpp"

namespace saferoute::eval {
namespace {

using nlohmann::json;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Ids already in the output, after dropping a torn last line.
absl::StatusOr<std::unordered_set<std::string>> ExistingIds(const std::string& path) {
  std::unordered_set<std::string> ids;
  if (!std::filesystem::exists(path)) return ids;
  SR_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  size_t start = 0, valid_end = 0;
  int line = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    if (end == std::string::npos) break;  // torn tail from a kill
    ++line;
    std::string_view row(text.data() + start, end - start);
    if (!IsBlank(row)) {
      json j;
      try {
        j = json::parse(row);
      } catch (const json::exception& e) {
        return absl::DataLossError(
            absl::StrFormat("%s:%d: invalid JSON: %s", path, line, e.what()));
      }
      if (!j.is_object() || !j.contains("id") || !j["id"].is_string()) {
        return absl::DataLossError(absl::StrFormat("%s:%d: row has no string 'id'", path, line));
      }
      ids.insert(j["id"].get<std::string>());
    }
    start = end + 1;
    valid_end = start;
  }
  if (valid_end != text.size()) {
    std::error_code ec;
    std::filesystem::resize_file(path, valid_end, ec);
    if (ec)
      return absl::InternalError(
          absl::StrCat(path, ": cannot drop the torn last line: ", ec.message()));
  }
  return ids;
}

class Appender {
 public:
  ~Appender() {
    if (fd_ >= 0) ::close(fd_);
  }
  absl::Status Open(const std::string& path) {
    path_ = path;
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0)
      return absl::InternalError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
    return absl::OkStatus();
  }
  absl::Status Append(const std::string& text) {
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return absl::InternalError(absl::StrCat(path_, ": write failed: ", std::strerror(errno)));
      }
      done += static_cast<size_t>(n);
    }
    if (::fsync(fd_) != 0)
      return absl::InternalError(absl::StrCat(path_, ": fsync failed: ", std::strerror(errno)));
    return absl::OkStatus();
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// One chat completion: the reply's text, or an error after retries. A reply
// with no text is returned as nullopt (counted as a parse failure).
absl::StatusOr<std::optional<std::string>> ChatCompletion(httplib::Client& client,
                                                          const std::string& endpoint,
                                                          const std::string& body,
                                                          const AugmentOptions& o,
                                                          int64_t* retries) {
  double delay = o.backoff_s;
  std::string last_error;
  for (int attempt = 0; attempt <= o.max_retries; ++attempt) {
    if (attempt > 0) {
      ++*retries;
      std::this_thread::sleep_for(std::chrono::duration<double>(delay));
      delay *= 2;
    }
    httplib::Result res = client.Post(endpoint.c_str(), body, "application/json");
    if (!res) {
      last_error = absl::StrCat("transport error: ", httplib::to_string(res.error()));
      continue;
    }
    if (res->status == 429 || res->status >= 500) {
      last_error = absl::StrCat("HTTP ", res->status);
      continue;
    }
    if (res->status != 200) {
      return absl::FailedPreconditionError(
          absl::StrCat("POST ", endpoint, ": HTTP ", res->status, ": ", res->body.substr(0, 300)));
    }
    json reply = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
    if (!reply.is_object() || !reply.contains("choices") || !reply["choices"].is_array() ||
        reply["choices"].empty()) {
      return std::optional<std::string>();
    }
    const json& choice = reply["choices"][0];
    if (!choice.is_object() || !choice.contains("message") || !choice["message"].is_object() ||
        !choice["message"].contains("content") || !choice["message"]["content"].is_string()) {
      return std::optional<std::string>();
    }
    return std::optional<std::string>(choice["message"]["content"].get<std::string>());
  }
  return absl::UnavailableError(absl::StrFormat("POST %s: gave up after %d tries (%s)", endpoint,
                                                o.max_retries + 1, last_error));
}

}  // namespace

std::string ParaphraseInstruction(const Example& example) {
  return absl::StrCat(
      "Rewrite the prompt and the response below in different words. Paraphrase each one "
      "separately, keep its "
      "meaning, intent and tone (including anything harmful or offensive: this is for training a "
      "safety "
      "classifier), and do not answer, judge or add to them. If the response is None, keep it "
      "None.\n"
      "Reply in exactly this layout and nothing else:\n"
      "prompt: <the paraphrased prompt>\n\n"
      "response: <the paraphrased response, or None>\n\n",
      "prompt: ", example.prompt, "\n\nresponse: ", example.response.value_or("None"), "\n\n");
}

std::optional<Paraphrase> ParseParaphrase(std::string_view reply, bool has_response) {
  constexpr std::string_view kPrompt = "prompt:", kResponse = "response:";
  const size_t p = reply.find(kPrompt);
  if (p == std::string_view::npos) return std::nullopt;
  const size_t r = reply.find(kResponse, p + kPrompt.size());
  if (r == std::string_view::npos) return std::nullopt;
  Paraphrase out;
  out.prompt = std::string(Trim(reply.substr(p + kPrompt.size(), r - p - kPrompt.size())));
  const std::string_view response = Trim(reply.substr(r + kResponse.size()));
  if (out.prompt.empty()) return std::nullopt;
  if (has_response) {
    if (response.empty() || response == "None") return std::nullopt;
    out.response = std::string(response);
  }
  return out;
}

absl::StatusOr<ApiUrl> ParseApiUrl(std::string_view url) {
  size_t scheme_end = 0;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (url.substr(0, scheme.size()) == scheme) scheme_end = scheme.size();
  }
  if (scheme_end == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--url '", std::string(url), "': must start with http:// or https://"));
  }
  const size_t slash = url.find('/', scheme_end);
  ApiUrl out;
  out.scheme_host_port = std::string(url.substr(0, slash));
  if (out.scheme_host_port.size() == scheme_end) {
    return absl::InvalidArgumentError(absl::StrCat("--url '", std::string(url), "': no host"));
  }
  if (slash != std::string_view::npos) out.base_path = std::string(url.substr(slash));
  while (!out.base_path.empty() && out.base_path.back() == '/') out.base_path.pop_back();
  return out;
}

absl::StatusOr<AugmentSummary> AugmentDataset(const std::vector<Example>& examples,
                                              const std::string& out_path,
                                              const AugmentOptions& o) {
  if (o.k < 1) return absl::InvalidArgumentError("augment: --k must be at least 1");
  if (o.model.empty()) return absl::InvalidArgumentError("augment: --model is empty");
  if (!(o.temperature >= 0))
    return absl::InvalidArgumentError("augment: --temperature must be >= 0");
  if (o.max_retries < 0 || !(o.timeout_s > 0))
    return absl::InvalidArgumentError("augment: bad retry/timeout settings");
  SR_ASSIGN_OR_RETURN(ApiUrl url, ParseApiUrl(o.url));
  for (const Example& ex : examples) {
    if (ex.id.find('#') != std::string::npos) {
      // "<id>#p<j>" must stay unambiguous: paraphrases of paraphrases are not made.
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s:%d: id '%s' contains '#' (already a paraphrase?)", ex.file, ex.line, ex.id));
    }
  }
  SR_ASSIGN_OR_RETURN(std::unordered_set<std::string> existing, ExistingIds(out_path));
  Appender out;
  SR_RETURN_IF_ERROR(out.Open(out_path));

  httplib::Client client(url.scheme_host_port);
  const auto timeout = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::duration<double>(o.timeout_s));
  client.set_connection_timeout(timeout);
  client.set_read_timeout(timeout);
  client.set_write_timeout(timeout);
  const std::string endpoint = url.base_path + "/chat/completions";

  AugmentSummary summary;
  const int64_t total = static_cast<int64_t>(examples.size()) * o.k;
  Progress progress("augment", total, 0, o.progress);
  int64_t done = 0;
  for (const Example& ex : examples) {
    const std::string instruction = ParaphraseInstruction(ex);
    for (int j = 1; j <= o.k; ++j, ++done) {
      const std::string id = absl::StrCat(ex.id, "#p", j);
      if (existing.contains(id)) {
        ++summary.skipped_existing;
        continue;
      }
      json request = {{"model", o.model},
                      {"messages", json::array({{{"role", "user"}, {"content", instruction}}})},
                      {"temperature", o.temperature},
                      {"max_tokens", o.max_tokens}};
      absl::StatusOr<std::optional<std::string>> reply =
          ChatCompletion(client, endpoint, request.dump(), o, &summary.retries);
      if (!reply.ok()) {
        return absl::Status(reply.status().code(),
                            absl::StrFormat("augment: id '%s' (%s:%d): %s", id, ex.file, ex.line,
                                            reply.status().message()));
      }
      ++summary.requested;
      std::optional<Paraphrase> para =
          reply->has_value() ? ParseParaphrase(**reply, ex.response.has_value()) : std::nullopt;
      if (!para.has_value()) {
        ++summary.parse_failures;
        continue;
      }
      nlohmann::ordered_json row;
      row["id"] = id;
      row["prompt"] = para->prompt;
      row["response"] = para->response.has_value() ? nlohmann::ordered_json(*para->response)
                                                   : nlohmann::ordered_json();
      row["unsafe"] = ex.unsafe;
      row["parent_id"] = ex.id;
      // The model's text may hold invalid UTF-8 only if the server sent it;
      // dump() would throw, so replace instead of failing the run.
      SR_RETURN_IF_ERROR(out.Append(
          row.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n"));
      ++summary.written;
      progress.Update(done + 1);
    }
  }
  progress.Finish();
  return summary;
}

}  // namespace saferoute::eval
