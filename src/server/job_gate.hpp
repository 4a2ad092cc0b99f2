// Admission control for FHE work: at most `max_running` jobs at once, at most `max_waiting`
// callers waiting for a slot, served in arrival order. A caller that finds the queue full is
// refused at once; one that waits longer than its timeout gives up. The caller runs its job
// on its own thread while holding the slot (the HTTP worker waits for the result anyway), so
// the slots are the pool: no hand-off between threads.
// Thread safety: every method may be called from any number of threads at once.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>

namespace veil::server {

struct JobGateStats {
  std::uint64_t running = 0;
  std::uint64_t waiting = 0;
  std::uint64_t admitted = 0;   // since construction
  std::uint64_t rejected = 0;   // queue full
  std::uint64_t timed_out = 0;  // waited past the timeout
  std::uint64_t cancelled = 0;  // refused or dropped from the queue by stop()
};

class JobGate {
 public:
  enum class Outcome { kAdmitted, kQueueFull, kTimedOut, kStopping };

  // Holds a slot until destroyed.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept : gate_(other.gate_) { other.gate_ = nullptr; }
    Slot& operator=(Slot&& other) noexcept {
      if (this != &other) {
        if (gate_ != nullptr) gate_->release();
        gate_ = other.gate_;
        other.gate_ = nullptr;
      }
      return *this;
    }
    Slot(const Slot&) = delete;
    ~Slot() {
      if (gate_ != nullptr) gate_->release();
    }
    explicit operator bool() const { return gate_ != nullptr; }

   private:
    friend class JobGate;
    explicit Slot(JobGate* gate) : gate_(gate) {}
    JobGate* gate_ = nullptr;
  };

  // REQUIRES: max_running >= 1.
  JobGate(std::size_t max_running, std::size_t max_waiting);

  // A slot, or an empty Slot and why not in `outcome`.
  Slot acquire(std::chrono::milliseconds timeout, Outcome* outcome);
  // Wakes and refuses every waiter, and refuses new callers. Running jobs keep their slots.
  void stop();
  // Whether acquire() would refuse a caller now (every slot busy and the queue full, or
  // stopping), counted in the stats as acquire() counts its refusals: lets a server refuse
  // a request before reading its body.
  bool refuse_now();
  JobGateStats stats() const;

 private:
  void release();

  const std::size_t max_running_;
  const std::size_t max_waiting_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::list<int> waiting_;  // arrival order; a waiter is identified by its node
  std::size_t running_ = 0;
  bool stopping_ = false;
  JobGateStats counters_;
};

}  // namespace veil::server
