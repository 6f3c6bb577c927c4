// AugmentDataset against a local httplib stand-in for an OpenAI-compatible
// server on 127.0.0.1 (ephemeral port): request shape, parsing, parse
// failures, retries on 503, resume without rework, timeouts.
#include "eval/augment.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"

namespace saferoute::eval {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;

// Replies "prompt: <PROMPT> v<n>\n\nresponse: <RESPONSE or None> v<n>" where
// n counts requests for that prompt; a prompt containing "garble" gets prose,
// "flaky" gets one 503 first, "slow" sleeps past the client timeout.
class StandInServer {
 public:
  StandInServer() {
    server_.Post("/v1/chat/completions", [this](const httplib::Request& req,
                                                httplib::Response& res) {
      json body = json::parse(req.body);
      const std::string user = body["messages"][0]["content"];
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(body);
      }
      // The example's own text follows the instruction's last "prompt: ".
      const size_t p = user.rfind("prompt: ");
      const size_t r = user.rfind("\n\nresponse: ");
      const std::string prompt = user.substr(p + 8, r - p - 8);
      std::string response = user.substr(r + 12);
      response = response.substr(0, response.find("\n\n"));
      if (prompt.find("slow") != std::string::npos)
        std::this_thread::sleep_for(std::chrono::milliseconds(600));
      int n;
      {
        std::lock_guard<std::mutex> lock(mu_);
        n = ++count_[prompt];
      }
      if (prompt.find("flaky") != std::string::npos && n == 1) {
        res.status = 503;
        return;
      }
      std::string content =
          prompt.find("garble") != std::string::npos
              ? "Sorry, I can only summarise this."
              : absl::StrCat("prompt: ", prompt, " v", n, "\n\nresponse: ",
                             response == "None" ? "None" : absl::StrCat(response, " v", n));
      json reply = {
          {"choices", json::array({{{"index", 0},
                                    {"message", {{"role", "assistant"}, {"content", content}}}}})}};
      res.set_content(reply.dump(), "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~StandInServer() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_, "/v1"); }
  std::vector<json> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::vector<json> requests_;
  std::map<std::string, int> count_;
};

Example Ex(std::string id, std::string prompt, std::optional<std::string> response, bool unsafe) {
  Example e;
  e.id = std::move(id);
  e.prompt = std::move(prompt);
  e.response = std::move(response);
  e.unsafe = unsafe;
  e.file = "d.jsonl";
  e.line = 1;
  return e;
}

std::vector<json> ReadRows(const std::string& path) {
  std::vector<json> rows;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) rows.push_back(json::parse(line));
  return rows;
}

class AugmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = (fs::temp_directory_path() /
            ("sr_augment_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".jsonl"))
               .string();
    fs::remove(out_);
  }
  void TearDown() override { fs::remove(out_); }
  AugmentOptions Options(const StandInServer& s, int k) const {
    AugmentOptions o;
    o.url = s.url();
    o.model = "para-model";
    o.k = k;
    o.temperature = 1.0;
    o.timeout_s = 5;
    o.backoff_s = 0.01;
    o.progress = false;
    return o;
  }
  std::string out_;
};

TEST_F(AugmentTest, WritesParaphrasesCountsFailuresRetriesAndResumes) {
  StandInServer server;
  const std::vector<Example> data = {Ex("a", "how to bake bread", std::nullopt, false),
                                     Ex("b", "flaky question", std::string("an answer"), true),
                                     Ex("c", "garble this", std::nullopt, true)};
  auto first = AugmentDataset(data, out_, Options(server, 2));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->written, 4);
  EXPECT_EQ(first->parse_failures, 2);  // both replies for "garble this"
  EXPECT_EQ(first->retries, 1);         // the first "flaky" request got a 503
  const auto rows = ReadRows(out_);
  ASSERT_EQ(rows.size(), 4u);
  std::string first_line;
  std::getline(std::ifstream(out_), first_line);  // the file's own key order
  EXPECT_EQ(
      first_line,
      R"({"id":"a#p1","prompt":"how to bake bread v1","response":null,"unsafe":false,"parent_id":"a"})");
  EXPECT_EQ(rows[2]["id"], "b#p1");
  EXPECT_EQ(rows[2]["response"], "an answer v2");  // v1 was the 503
  EXPECT_EQ(rows[2]["unsafe"], true);
  // Request shape: OpenAI chat completions with the model and temperature.
  const json req = server.requests().front();
  EXPECT_EQ(req["model"], "para-model");
  EXPECT_EQ(req["temperature"], 1.0);
  EXPECT_EQ(req["messages"][0]["role"], "user");
  EXPECT_THAT(req["messages"][0]["content"].get<std::string>(),
              HasSubstr("prompt: how to bake bread\n\nresponse: None"));

  // A torn last line (killed mid-write) is dropped; k = 3 then asks only for
  // what is missing: p3 of a and b, and all of c again (its failures were dropped).
  { std::ofstream(out_, std::ios::app) << R"({"id":"a#p3","pro)"; }
  const size_t before = server.requests().size();
  auto second = AugmentDataset(data, out_, Options(server, 3));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->skipped_existing, 4);
  EXPECT_EQ(server.requests().size() - before, 5u);
  const auto all = ReadRows(out_);
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(all[4]["id"], "a#p3");
  EXPECT_EQ(all[5]["id"], "b#p3");
}

TEST_F(AugmentTest, TimeoutsAreRetriedThenReported) {
  StandInServer server;
  AugmentOptions o = Options(server, 1);
  o.timeout_s = 0.2;
  o.max_retries = 1;
  auto r = AugmentDataset({Ex("s", "slow one", std::nullopt, false)}, out_, o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(
      r.status().message(),
      HasSubstr(
          "augment: id 's#p1' (d.jsonl:1): POST /v1/chat/completions: gave up after 2 tries"));
}

TEST_F(AugmentTest, UnreachableServerAndBadUrl) {
  AugmentOptions o;
  o.model = "m";
  o.url = "ftp://example.invalid/v1";
  EXPECT_THAT(AugmentDataset({Ex("a", "x", std::nullopt, false)}, out_, o).status().message(),
              HasSubstr("must start with http:// or https://"));
  // A port nobody listens on (bound then released).
  int port;
  {
    httplib::Server s;
    port = s.bind_to_any_port("127.0.0.1");
  }
  o.url = absl::StrCat("http://127.0.0.1:", port, "/v1");
  o.max_retries = 1;
  o.backoff_s = 0.01;
  o.timeout_s = 1;
  o.progress = false;
  auto r = AugmentDataset({Ex("a", "x", std::nullopt, false)}, out_, o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("transport error"));
}

TEST(ParseParaphraseTest, Layouts) {
  auto p = ParseParaphrase("Sure!\nprompt:  new prompt \n\nresponse: new answer\nmore\n", true);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->prompt, "new prompt");
  EXPECT_EQ(p->response.value(), "new answer\nmore");
  auto none = ParseParaphrase("prompt: q\nresponse: None", false);
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->response.has_value());
  EXPECT_FALSE(
      ParseParaphrase("prompt: q\nresponse: None", true).has_value());  // the response was lost
  EXPECT_FALSE(
      ParseParaphrase("response: a prompt: b", false).has_value());          // markers out of order
  EXPECT_FALSE(ParseParaphrase("prompt: \nresponse: x", true).has_value());  // empty prompt
  EXPECT_FALSE(ParseParaphrase("no markers at all", false).has_value());
}

TEST(ParseApiUrlTest, SplitsHostAndPath) {
  auto u = ParseApiUrl("http://127.0.0.1:8000/v1/");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->scheme_host_port, "http://127.0.0.1:8000");
  EXPECT_EQ(u->base_path, "/v1");
  EXPECT_EQ(ParseApiUrl("http://localhost:9")->base_path, "");
  EXPECT_FALSE(ParseApiUrl("http:///v1").ok());
}

}  // namespace
}  // namespace saferoute::eval
