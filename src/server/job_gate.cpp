// Admission control for FHE work (job_gate.hpp).
#include "job_gate.hpp"

#include <stdexcept>

namespace veil::server {

JobGate::JobGate(std::size_t max_running, std::size_t max_waiting) : max_running_(max_running), max_waiting_(max_waiting) {
  if (max_running == 0) throw std::invalid_argument("JobGate: max_running must be at least 1");
}

bool JobGate::refuse_now() {
  std::lock_guard lock(mutex_);
  if (stopping_) {
    ++counters_.cancelled;
    return true;
  }
  if (running_ >= max_running_ && waiting_.size() >= max_waiting_) {
    ++counters_.rejected;
    return true;
  }
  return false;
}

JobGate::Slot JobGate::acquire(std::chrono::milliseconds timeout, Outcome* outcome) {
  std::unique_lock lock(mutex_);
  if (stopping_) {
    ++counters_.cancelled;
    *outcome = Outcome::kStopping;
    return Slot();
  }
  if (running_ < max_running_ && waiting_.empty()) {
    ++running_;
    ++counters_.admitted;
    *outcome = Outcome::kAdmitted;
    return Slot(this);
  }
  if (waiting_.size() >= max_waiting_) {
    ++counters_.rejected;
    *outcome = Outcome::kQueueFull;
    return Slot();
  }
  const auto me = waiting_.insert(waiting_.end(), 0);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const bool ready = cv_.wait_until(lock, deadline, [&] {
    return stopping_ || (waiting_.begin() == me && running_ < max_running_);
  });
  waiting_.erase(me);
  // The head of the queue changed (or a slot is still free): let the next waiter look.
  cv_.notify_all();
  if (stopping_) {
    ++counters_.cancelled;
    *outcome = Outcome::kStopping;
    return Slot();
  }
  if (!ready) {
    ++counters_.timed_out;
    *outcome = Outcome::kTimedOut;
    return Slot();
  }
  ++running_;
  ++counters_.admitted;
  *outcome = Outcome::kAdmitted;
  return Slot(this);
}

void JobGate::release() {
  {
    std::lock_guard lock(mutex_);
    --running_;
  }
  cv_.notify_all();
}

void JobGate::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
}

JobGateStats JobGate::stats() const {
  std::lock_guard lock(mutex_);
  JobGateStats s = counters_;
  s.running = running_;
  s.waiting = waiting_.size();
  return s;
}

}  // namespace veil::server
