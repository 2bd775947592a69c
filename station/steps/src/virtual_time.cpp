#include "eol/station/virtual_time.hpp"

#include <fmt/core.h>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cmath>
#include <optional>
#include <stdexcept>

namespace eol::station {

namespace asio = boost::asio;

namespace {
double steady_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

struct VirtualTime::Waiter {
    std::pair<double, std::uint64_t> key{0.0, 0};
    bool queued = false;
    bool granted = false;
    bool left = false;
    // Set while its coroutine waits (under m_): where to post the wake-up.
    std::optional<asio::any_io_executor> exec;
    asio::steady_timer* timer = nullptr;
};

VirtualTime::VirtualTime(double unix_epoch_s, double pace, std::function<void(double, double)> on_advance)
    : epoch_s_(unix_epoch_s), pace_(pace), wall0_s_(steady_s()), on_advance_(std::move(on_advance)) {
    if (!(pace >= 0) || !std::isfinite(pace))
        throw std::invalid_argument(fmt::format("virtual time: pace {} is not a number >= 0", pace));
}

double VirtualTime::now_s() const {
    std::lock_guard lk(m_);
    return now_s_;
}
double VirtualTime::unix_now_s() const { return epoch_s_ + now_s(); }

std::size_t VirtualTime::participants() const {
    std::lock_guard lk(m_);
    return participants_;
}

void VirtualTime::queue_locked(const Ticket& t, double due_s) {
    t->key = {due_s, seq_++};
    t->queued = true;
    t->granted = false;
    queue_.emplace(t->key, t);
}

void VirtualTime::give_next_locked() {
    if (holder_ || paused_ > 0 || queue_.empty()) return;
    auto it = queue_.begin();
    Ticket t = it->second;
    queue_.erase(it);
    t->queued = false;
    if (t->key.first > now_s_) {
        const double old = now_s_;
        now_s_ = t->key.first;
        if (on_advance_) on_advance_(now_s_, old);
    }
    holder_ = t.get();
    t->granted = true;
    if (t->timer && t->exec)
        asio::post(*t->exec, [this, t] {
            std::lock_guard lk(m_);
            if (t->timer) t->timer->cancel();
        });
}

VirtualTime::Ticket VirtualTime::join() {
    auto t = std::make_shared<Waiter>();
    std::lock_guard lk(m_);
    ++participants_;
    queue_locked(t, now_s_);
    give_next_locked();
    return t;
}

asio::awaitable<void> VirtualTime::turn(Ticket t) {
    const auto exec = co_await asio::this_coro::executor;
    asio::steady_timer timer(exec, asio::steady_timer::time_point::max());
    for (;;) {
        {
            std::lock_guard lk(m_);
            if (t->left) throw std::logic_error("virtual time: turn() after leave()");
            if (t->granted) {
                t->timer = nullptr;
                t->exec.reset();
                break;
            }
            t->timer = &timer;
            t->exec = exec;
        }
        boost::system::error_code ec;
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    if (pace_ > 0) {  // not before its wall time (with the baton: nobody else runs meanwhile)
        const double wait_s = wall0_s_ + now_s() / pace_ - steady_s();
        if (wait_s > 0) {
            timer.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                std::chrono::duration<double>(wait_s)));
            boost::system::error_code ec;
            co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
    }
}

asio::awaitable<void> VirtualTime::sleep_s(Ticket t, double station_s) {
    {
        std::lock_guard lk(m_);
        if (holder_ != t.get())
            throw std::logic_error("virtual time: sleep_s() by a participant that does not hold the baton");
        holder_ = nullptr;
        queue_locked(t, station_s > 0 ? now_s_ + station_s : now_s_);
        give_next_locked();
    }
    co_await turn(std::move(t));
}

void VirtualTime::wake(const Ticket& t) {
    std::lock_guard lk(m_);
    if (!t->queued || t->key.first <= now_s_) return;
    queue_.erase(t->key);
    queue_locked(t, now_s_);
    give_next_locked();
}

void VirtualTime::leave(const Ticket& t) {
    std::lock_guard lk(m_);
    if (t->left) return;
    t->left = true;
    --participants_;
    if (t->queued) {
        queue_.erase(t->key);
        t->queued = false;
    }
    if (holder_ == t.get()) holder_ = nullptr;
    if (t->timer && t->exec)  // a coroutine still waiting: let it see `left`
        asio::post(*t->exec, [this, t] {
            std::lock_guard lk2(m_);
            if (t->timer) t->timer->cancel();
        });
    give_next_locked();
}

void VirtualTime::pause() {
    std::lock_guard lk(m_);
    ++paused_;
}

void VirtualTime::resume() {
    std::lock_guard lk(m_);
    if (paused_ > 0) --paused_;
    give_next_locked();
}

}  // namespace eol::station
