// The worker pool that serves the HTTP server's accepted connections (what
// httplib calls its task queue), with a drain mode for graceful stops.
//
// `threads` workers take connections in arrival order; a connection holds
// its worker while it is read, while its request waits for the guards and
// while it idles between keep-alive requests. Connections beyond the workers
// wait in the queue.
//
// Drain (graceful stop): a queued connection would otherwise wait behind
// requests in flight, and once the listener closes httplib would drop it
// unanswered. After BeginDrain() every queued or newly accepted connection
// that finds no idle worker gets a helper thread (at most `max_helpers` in
// all), so it is read and answered at once (503 while draining; /readyz 503).
// Shutdown() runs every job still queued before it joins the threads.
//
// Thread-safe.
#ifndef SAFEROUTE_SERVER_CONNECTION_POOL_H_
#define SAFEROUTE_SERVER_CONNECTION_POOL_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace saferoute::server {

class ConnectionPool {
 public:
  ConnectionPool(int threads, int max_helpers);
  ~ConnectionPool();  // Shutdown()

  void Enqueue(std::function<void()> job);
  void BeginDrain();
  // Runs what is queued, then joins every thread. Idempotent; a job enqueued
  // once it has begun runs on the calling thread (nothing is dropped).
  void Shutdown();

  size_t queued() const;
  int helpers_started() const;

 private:
  void WorkLoop();
  // Starts helpers for queued jobs no idle thread will take. Caller holds mu_.
  void AddHelpersLocked();

  const int max_helpers_;
  mutable std::mutex mu_;
  std::condition_variable work_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  int idle_ = 0;
  int helpers_ = 0;
  bool draining_ = false;
  bool stopping_ = false;
};

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_CONNECTION_POOL_H_
