#include "server/connection_pool.h"

#include "util/status.h"

namespace saferoute::server {

ConnectionPool::ConnectionPool(int threads, int max_helpers) : max_helpers_(max_helpers) {
  SR_CHECK(threads >= 1 && max_helpers >= 0);
  std::lock_guard lock(mu_);
  idle_ = threads;  // every thread counts as idle from its start until it takes a job
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { WorkLoop(); });
}

ConnectionPool::~ConnectionPool() { Shutdown(); }

void ConnectionPool::Enqueue(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      jobs_.push_back(std::move(job));
      if (draining_) AddHelpersLocked();
      work_.notify_one();
      return;
    }
  }
  job();  // Shutdown() has begun: its threads may be gone already
}

void ConnectionPool::BeginDrain() {
  std::lock_guard lock(mu_);
  draining_ = true;
  AddHelpersLocked();
}

void ConnectionPool::AddHelpersLocked() {
  // Idle threads will take jobs_.size() jobs' worth only up to their number.
  int unserved = static_cast<int>(jobs_.size()) - idle_;
  while (unserved > 0 && helpers_ < max_helpers_ && !stopping_) {
    threads_.emplace_back([this] { WorkLoop(); });
    ++helpers_;
    ++idle_;
    --unserved;
  }
}

void ConnectionPool::WorkLoop() {
  std::unique_lock lock(mu_);
  for (;;) {
    work_.wait(lock, [&] { return !jobs_.empty() || stopping_; });
    if (jobs_.empty()) break;  // stopping, nothing left
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    --idle_;
    lock.unlock();
    job();
    lock.lock();
    ++idle_;
  }
  --idle_;
}

void ConnectionPool::Shutdown() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;  // no helper starts from here on, so threads_ is final
    threads.swap(threads_);
  }
  work_.notify_all();
  // Each thread leaves only once the queue is empty.
  for (std::thread& t : threads) t.join();
}

size_t ConnectionPool::queued() const {
  std::lock_guard lock(mu_);
  return jobs_.size();
}

int ConnectionPool::helpers_started() const {
  std::lock_guard lock(mu_);
  return helpers_;
}

}  // namespace saferoute::server
