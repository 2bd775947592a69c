// eol/station/virtual_time.hpp — discrete-event station time for
// simulations, so that a run over simulated instruments on loopback (the
// demo) is repeatable bit for bit whatever the threads and the host's load do.
//
// Participants (a channel's test, its safety monitor) take turns holding one
// baton: exactly one runs at a time. Time stands still while it runs — its
// driver calls over loopback take no station time — and when it sleeps or
// leaves, the baton goes to the waiting participant with the earliest
// wake-up (ties: the one that queued first), and time jumps to that wake-up.
// So the order of every instrument command, and of every draw of the
// simulators' noise, follows from the recipe and the seed alone. (On a scaled
// wall clock a reading that lags 10 ms on a loaded host is seconds of
// station time, and the channels' commands interleave at random.)
//
// Lifecycle of a participant: join() (any thread) queues a turn at now — the
// participant counts from then on, so time cannot run ahead of one that has
// been started but not yet scheduled; its coroutine awaits turn(), then
// sleep_s() as often as it likes, then calls leave() (also when it fails).
// pause() … resume(): no turn is given meanwhile (a caller that starts
// several participants at one instant). wake(): a sleeping participant's
// turn comes at now instead (an abort must not wait for the wake-up).
//
// Pace: with pace > 0 a turn at station time t is not given before wall time
// start + t / pace (a demo a person can watch); 0 = as fast as the CPU goes.
// on_advance(new_now_s, old_now_s) is told every time station time moves
// (to move a simulated fixture's clock), before the turn is given.
//
// Thread-safety: every member is thread-safe. turn() and sleep_s() resume on
// the awaiting coroutine's executor, which must run on ONE thread (the
// controller's loop). Errors: std::logic_error for sleep_s() by a
// participant that does not hold the baton, or a ticket used after leave().
#pragma once

#include <utility>  // before Asio (Boost 1.74's awaitable.hpp needs std::exchange)

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

namespace eol::station {

class VirtualTime {
public:
    struct Waiter;
    using Ticket = std::shared_ptr<Waiter>;

    /// Station time starts at 0 s; unix time is unix_epoch_s + station time.
    /// std::invalid_argument for a negative or non-finite pace.
    explicit VirtualTime(double unix_epoch_s, double pace = 0.0,
                         std::function<void(double new_now_s, double old_now_s)> on_advance = {});
    VirtualTime(const VirtualTime&) = delete;
    VirtualTime& operator=(const VirtualTime&) = delete;

    double now_s() const;
    double unix_now_s() const;
    double pace() const { return pace_; }

    Ticket join();
    boost::asio::awaitable<void> turn(Ticket t);
    /// Gives the baton back and takes it again `station_s` later (≤ 0: now,
    /// after the participants already due now).
    boost::asio::awaitable<void> sleep_s(Ticket t, double station_s);
    void wake(const Ticket& t);
    void leave(const Ticket& t);
    void pause();
    void resume();

    /// Participants joined and not yet left (tests).
    std::size_t participants() const;

private:
    void give_next_locked();
    void queue_locked(const Ticket& t, double due_s);

    mutable std::mutex m_;
    double now_s_ = 0.0;
    double epoch_s_;
    double pace_;
    double wall0_s_;
    std::function<void(double, double)> on_advance_;
    std::uint64_t seq_ = 0;
    std::map<std::pair<double, std::uint64_t>, Ticket> queue_;
    Waiter* holder_ = nullptr;
    int paused_ = 0;
    std::size_t participants_ = 0;
};

/// A participant that leaves when destroyed (every path out of a coroutine).
class VirtualTurn {
public:
    VirtualTurn() = default;
    VirtualTurn(VirtualTime* vt, VirtualTime::Ticket t) : vt_(vt), t_(std::move(t)) {}
    VirtualTurn(VirtualTurn&& o) noexcept : vt_(std::exchange(o.vt_, nullptr)), t_(std::move(o.t_)) {}
    VirtualTurn& operator=(VirtualTurn&&) = delete;
    VirtualTurn(const VirtualTurn&) = delete;
    ~VirtualTurn() {
        if (vt_) vt_->leave(t_);
    }
    VirtualTime* time() const { return vt_; }
    const VirtualTime::Ticket& ticket() const { return t_; }

private:
    VirtualTime* vt_ = nullptr;
    VirtualTime::Ticket t_;
};

}  // namespace eol::station
