#include "eol/station/controller.hpp"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <variant>

#include "eol/instruments/errors.hpp"
#include "eol/instruments/roles.hpp"
#include "eol/models/pat.hpp"  // median_inplace
#include "eol/station/errors.hpp"
#include "eol/station/fixture_health.hpp"
#include "eol/station/instrument_factory.hpp"
#include "eol/station/log.hpp"
#include "eol/station/shift.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/steps.hpp"
#include "eol/station/store.hpp"
#include "eol/station/text.hpp"
#include "eol/station/virtual_time.hpp"

namespace eol::station {

namespace asio = boost::asio;
using asio::awaitable;

std::string_view to_string(ChannelState s) {
    switch (s) {
        case ChannelState::idle: return "idle";
        case ChannelState::testing: return "testing";
        case ChannelState::complete: return "complete";
        case ChannelState::aborted: return "aborted";
        case ChannelState::faulted: return "faulted";
    }
    return "?";
}

std::string_view to_string(InstrumentState s) {
    switch (s) {
        case InstrumentState::disconnected: return "disconnected";
        case InstrumentState::connecting: return "connecting";
        case InstrumentState::ready: return "ready";
        case InstrumentState::active: return "active";
        case InstrumentState::safe: return "safe";
        case InstrumentState::error: return "error";
    }
    return "?";
}

namespace {

spdlog::logger& log() { return station_log("controller"); }

double unix_now_s() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
double steady_now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
std::chrono::steady_clock::duration wall(double s) {
    return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

/// A load reading this small is "off" (the simulators and real loads read a
/// few mA of offset with the input off).
constexpr double kOffCurrentA = 0.05;
/// Consecutive monitor readings off the setpoint before "not following".
constexpr int kFollowPeriods = 3;
/// The temperature slope is taken over at least this much station time.
constexpr double kRiseWindowS = 5.0;

/// One channel's clock: station time from the shared scaled wall clock (or
/// the virtual time of a simulation, with the channel's turn), and waits
/// that an abort interrupts at once (RunAborted). Used on the controller's
/// loop thread only.
class ChannelClock final : public StepClock {
public:
    ChannelClock(const ScaledWallClock& base, VirtualTime* vt) : base_(base), vt_(vt) {}
    double now_s() const override { return vt_ ? vt_->now_s() : base_.now_s(); }
    double unix_now_s() const override { return vt_ ? vt_->unix_now_s() : base_.unix_now_s(); }
    double station_per_wall_s() const override { return vt_ ? 0.0 : base_.time_scale(); }
    awaitable<void> sleep_s(double station_s) override {
        if (aborted_) throw RunAborted(reason_);
        if (vt_) {
            co_await vt_->sleep_s(ticket_, station_s);
        } else if (station_s > 0) {
            asio::steady_timer timer(co_await asio::this_coro::executor);
            timer.expires_after(wall(station_s / base_.time_scale()));
            timer_ = &timer;
            boost::system::error_code ec;
            co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            timer_ = nullptr;
        }
        if (aborted_) throw RunAborted(reason_);
    }
    void abort(const std::string& reason) {
        if (aborted_) return;
        aborted_ = true;
        reason_ = reason;
        if (timer_) timer_->cancel();
        if (vt_ && ticket_) vt_->wake(ticket_);
    }
    /// A new cell (with its turn in virtual time; nullptr on the wall clock).
    void rearm(VirtualTime::Ticket ticket) {
        aborted_ = false;
        reason_.clear();
        ticket_ = std::move(ticket);
    }
    bool aborted() const { return aborted_; }

private:
    const ScaledWallClock& base_;
    VirtualTime* vt_;
    VirtualTime::Ticket ticket_;
    bool aborted_ = false;
    std::string reason_;
    asio::steady_timer* timer_ = nullptr;
};

/// Command count, errors and timing of one instrument (any thread).
struct Health {
    mutable std::mutex m;
    std::uint64_t commands = 0, errors = 0;
    std::string last_error;
    std::vector<double> ring;  // last 1024 command durations, seconds
    std::size_t next = 0;

    void record(double dt_s, const char* error) {
        std::lock_guard lk(m);
        ++commands;
        if (ring.size() < 1024) ring.push_back(dt_s);
        else ring[next++ % 1024] = dt_s;
        if (error) {
            ++errors;
            last_error = error;
        }
    }
};

/// Whether an error means the instrument is gone (reconnect it) rather than
/// a refusal of one command.
bool lost(const std::exception& e) {
    return dynamic_cast<const instruments::ConnectionError*>(&e) || dynamic_cast<const instruments::TimeoutError*>(&e) ||
           dynamic_cast<const instruments::ProtocolError*>(&e);
}

/// Times every command and reports a lost instrument (runs on the lane).
template <class F>
auto timed(Health& h, const std::function<void(const std::string&)>& on_lost, F f) {
    const double t0 = steady_now_s();
    try {
        if constexpr (std::is_void_v<decltype(f())>) {
            f();
            h.record(steady_now_s() - t0, nullptr);
        } else {
            auto r = f();
            h.record(steady_now_s() - t0, nullptr);
            return r;
        }
    } catch (const std::exception& e) {
        h.record(steady_now_s() - t0, e.what());
        if (lost(e) && on_lost) on_lost(e.what());
        throw;
    }
}

class TimedLoad final : public instruments::ElectronicLoad {
public:
    TimedLoad(instruments::ElectronicLoad& inner, Health& h, std::function<void(const std::string&)> on_lost)
        : in_(inner), h_(h), lost_(std::move(on_lost)) {}
    const std::string& name() const override { return in_.name(); }
    void connect() override { in_.connect(); }
    void close() override { in_.close(); }
    int channels() const override { return in_.channels(); }
    instruments::LoadCapabilities capabilities() const override { return in_.capabilities(); }
    instruments::Identity identify() override { return timed(h_, lost_, [&] { return in_.identify(); }); }
    void reset() override { timed(h_, lost_, [&] { in_.reset(); }); }
    void set_mode(int ch, instruments::LoadMode mode, double level) override {
        timed(h_, lost_, [&] { in_.set_mode(ch, mode, level); });
    }
    void set_input(int ch, bool on) override { timed(h_, lost_, [&] { in_.set_input(ch, on); }); }
    instruments::LoadReading measure(int ch) override { return timed(h_, lost_, [&] { return in_.measure(ch); }); }
    double measure_voltage_v(int ch) override { return timed(h_, lost_, [&] { return in_.measure_voltage_v(ch); }); }
    instruments::Protection protection(int ch) override {
        return timed(h_, lost_, [&] { return in_.protection(ch); });
    }
    void check_error_queue() override { timed(h_, lost_, [&] { in_.check_error_queue(); }); }
    void prepare_pulse(int ch, const instruments::PulseSpec& spec) override {
        timed(h_, lost_, [&] { in_.prepare_pulse(ch, spec); });
    }
    void arm_pulse(int ch, const instruments::PulseSpec& spec) override {
        timed(h_, lost_, [&] { in_.arm_pulse(ch, spec); });
    }
    void trigger(int ch) override { timed(h_, lost_, [&] { in_.trigger(ch); }); }
    bool pulse_done(int ch) override { return timed(h_, lost_, [&] { return in_.pulse_done(ch); }); }
    instruments::PulseData fetch_pulse(int ch) override { return timed(h_, lost_, [&] { return in_.fetch_pulse(ch); }); }

private:
    instruments::ElectronicLoad& in_;
    Health& h_;
    std::function<void(const std::string&)> lost_;
};

class TimedThermo final : public instruments::TemperatureReader {
public:
    TimedThermo(instruments::TemperatureReader& inner, Health& h, std::function<void(const std::string&)> on_lost)
        : in_(inner), h_(h), lost_(std::move(on_lost)) {}
    const std::string& name() const override { return in_.name(); }
    void connect() override { in_.connect(); }
    void close() override { in_.close(); }
    int channels() const override { return in_.channels(); }
    instruments::Identity identify() override { return timed(h_, lost_, [&] { return in_.identify(); }); }
    std::vector<instruments::TcReading> read_all() override { return timed(h_, lost_, [&] { return in_.read_all(); }); }

private:
    instruments::TemperatureReader& in_;
    Health& h_;
    std::function<void(const std::string&)> lost_;
};

struct Instrument {
    explicit Instrument(Lane l) : lane(std::move(l)) {}
    const InstrumentConfig* cfg = nullptr;
    std::unique_ptr<instruments::ElectronicLoad> load_driver;
    std::unique_ptr<instruments::TemperatureReader> thermo_driver;
    std::unique_ptr<TimedLoad> load;      // what the channels use
    std::unique_ptr<TimedThermo> thermo;  // what the channels use
    Lane lane;
    ThermoShare share;  // a thermocouple module's reading shared by its positions (lane only)
    Health health;
    // Guarded by Impl::mutex:
    InstrumentState state = InstrumentState::disconnected;
    std::string last_error;
    std::uint64_t reconnects = 0;
    bool reconnecting = false;
    int testing = 0;  // channels testing on it

    bool usable() const {
        return state == InstrumentState::ready || state == InstrumentState::active || state == InstrumentState::safe;
    }
    void connect_driver() {
        if (load_driver) load_driver->connect();
        else thermo_driver->connect();
    }
    void close_driver() noexcept {
        try {
            if (load_driver) load_driver->close();
            else thermo_driver->close();
        } catch (...) {
        }
    }
};

/// What made the safety monitor trip.
struct Trip {
    std::string cause;    // "over-temperature", "temperature rise", "voltage", "current", "thermocouple", "instrument"
    std::string message;  // for the record
    bool hazardous = false;  // hold the cell (over-temperature, fast rise)
    bool fault = false;      // the channel needs a fault reset (instrument, thermocouple)
    double to_off_s = -1;
};

struct Channel {
    Channel(const ScaledWallClock& base, VirtualTime* vt) : clock(base, vt) {}
    const ChannelConfig* cfg = nullptr;
    Instrument* load = nullptr;
    Instrument* thermo = nullptr;
    std::optional<int> ambient_channel;
    Instrument* ambient = nullptr;  // the ambient's module when it is not `thermo` (read across modules)
    /// The instruments a test on this channel uses.
    std::vector<Instrument*> uses() const {
        std::vector<Instrument*> v{load, thermo};
        if (ambient) v.push_back(ambient);
        return v;
    }
    ChannelClock clock;  // loop thread only
    // Guarded by Impl::mutex:
    ChannelState state = ChannelState::idle;
    std::string serial, verdict, reason;
    double since_unix_s = 0;
    std::string step;
    std::size_t step_index = 0;
    double t0_station_s = 0;
    double v_v = NAN, i_a = NAN, temp_c = NAN;
    std::string out_of_service;  // fixture health: why the position is out of service ("" in service)
    // Loop thread only:
    LoadDemand demand;
    double demand_since_station_s = 0;
    bool monitoring = false;
    asio::steady_timer* monitor_timer = nullptr;
    VirtualTime::Ticket monitor_ticket;  // virtual time: the monitor's turn
    std::optional<Lane> compute_lane;    // the channel's fits
    std::optional<Trip> trip;
};

/// "held: hold lot 0042 by qa (why)[; …]" (the state, not LookupResult::status(),
/// which says "unknown" for a unit never tested here even when its lot is held).
std::string describe_holds(const LookupResult& r) {
    const std::string state(to_string(r.state));
    std::string out = state;
    for (const QuarantineEvent& e : r.because)
        out += fmt::format("{} {} {} {} by {} ({})", out.size() == state.size() ? ":" : ";", to_string(e.action),
                           to_string(e.scope), printable(e.target), printable(e.actor), printable(e.reason));
    return out;
}

/// Runs `f` on `lane` and waits for it on the calling thread (never the loop's).
template <class F>
auto wait_on_lane(const Lane& lane, F f) -> decltype(f()) {
    using R = decltype(f());
    std::packaged_task<R()> task(std::move(f));
    auto fut = task.get_future();
    asio::post(lane, [&task] { task(); });
    return fut.get();
}

}  // namespace

struct Controller::Impl {
    StationConfig cfg;
    ControllerOptions opt;
    SerialScheme scheme;
    ScaledWallClock clock;
    std::filesystem::path store_path;

    std::mutex store_mutex;  // the store, the lookup session, the sinks
    std::optional<Store> store;
    std::optional<LookupSession> lookup;
    std::vector<RecordSink*> sinks;
    std::optional<TestTimeScreen> screen;  // store lane / store_mutex only
    /// Fixture health ([fixture_health] enabled): the positions' learned
    /// offsets, carried on from the store's history (store_mutex).
    std::optional<models::FixtureMonitor> fixture;
    /// Each position's thermocouple calibration as the heat step uses it
    /// (copied from `fixture` so that starting a cell never waits for the
    /// store lane; calibration_mutex).
    std::mutex calibration_mutex;
    std::map<int, double> tc_calibration_k;
    /// A module's reading shared between its positions and monitors
    /// (share_module_reads); nullptr in virtual time, where which reads
    /// happen would follow the threads' timing.
    ThermoShare* shared_reads(Instrument& module) {
        return opt.virtual_time || !opt.share_module_reads ? nullptr : &module.share;
    }
    /// After `fixture` changed at `position` (store_mutex held).
    void publish_calibration(int position) {
        if (!fixture || !cfg.fixture_health.calibrate_thermocouples) return;
        const double cal = fixture->thermo_calibration_k(position);
        std::lock_guard lk(calibration_mutex);
        if (std::isfinite(cal)) tc_calibration_k[position] = cal;
        else tc_calibration_k.erase(position);
    }
    std::optional<double> calibration_of(int position) {
        std::lock_guard lk(calibration_mutex);
        auto it = tc_calibration_k.find(position);
        return it == tc_calibration_k.end() ? std::nullopt : std::optional<double>(it->second);
    }
    /// The golden check (Impl::mutex).
    GoldenStatus golden;
    /// A finished record waiting for the store lane (store_batched()).
    struct PendingRecord {
        TestRecord* rec;
        CellResult* res;
        bool hazardous;
    };

    std::mutex store_queue_mutex;
    std::vector<PendingRecord> store_queue;  // records waiting for the store lane

    asio::io_context loop;
    asio::executor_work_guard<asio::io_context::executor_type> work{loop.get_executor()};
    std::unique_ptr<asio::thread_pool> drivers;
    std::unique_ptr<asio::thread_pool> compute;  // the fits, a strand per channel
    std::optional<Lane> store_lane;
    std::thread loop_thread;

    std::map<std::string, std::unique_ptr<Instrument>> instruments;
    std::map<int, std::unique_ptr<Channel>> channels;

    mutable std::mutex mutex;  // channel and instrument states, shut_down, running
    std::condition_variable idle_cv;
    int running = 0;  // cells between start() and their result
    bool shut_down = false;
    bool stopped_loop = false;

    Impl(StationConfig station, ControllerOptions o)
        : cfg(std::move(station)), opt(std::move(o)), scheme(SerialScheme::load(cfg.serial_scheme)), clock(opt.time_scale) {
        if (!(opt.make_safe_timeout_s >= 0)) throw UsageError("make-safe timeout must be >= 0 s");
        store_path = opt.store ? *opt.store : cfg.store;
        if (store_path.empty()) throw UsageError(cfg.file.string() + ": station.store: no results store named");
        if (store_path.has_parent_path()) std::filesystem::create_directories(store_path.parent_path());
        OpenOptions so;
        so.create = true;
        store.emplace(Store::open(store_path, so));
        lookup.emplace(*store, scheme);

        std::set<std::string> used;
        for (const ChannelConfig& ch : cfg.channels) {
            used.insert(ch.load);
            used.insert(ch.thermo);
        }
        if (cfg.ambient) used.insert(cfg.ambient->thermo);
        // A driver thread per instrument (at most 8) and one for the store.
        drivers = std::make_unique<asio::thread_pool>(std::clamp<std::size_t>(used.size(), 1, 8) + 1);
        store_lane.emplace(asio::make_strand(drivers->get_executor()));
        compute = std::make_unique<asio::thread_pool>(std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 4));
        for (const ChannelConfig& ch : cfg.channels) {
            auto instrument = [&](const std::string& name) -> Instrument* {
                auto& slot = instruments[name];
                if (!slot) {
                    const InstrumentConfig* ic = cfg.find_instrument(name);
                    if (!ic) throw UsageError(fmt::format("{}: channels: position {} names instrument '{}', which is not configured",
                                                          cfg.file.string(), ch.position, name));
                    slot = std::make_unique<Instrument>(asio::make_strand(drivers->get_executor()));
                    Instrument* inst = slot.get();
                    inst->cfg = ic;
                    auto on_lost = [this, inst](const std::string& why) {
                        asio::post(loop, [this, inst, why] { instrument_lost(*inst, why); });
                    };
                    if (ic->is_load()) {
                        inst->load_driver = make_load(*ic, &loop);
                        inst->load = std::make_unique<TimedLoad>(*inst->load_driver, inst->health, on_lost);
                    } else {
                        inst->thermo_driver = make_thermo(*ic);
                        inst->thermo = std::make_unique<TimedThermo>(*inst->thermo_driver, inst->health, on_lost);
                    }
                }
                return slot.get();
            };
            auto c = std::make_unique<Channel>(clock, opt.virtual_time.get());
            c->cfg = &ch;
            c->compute_lane.emplace(asio::make_strand(compute->get_executor()));
            c->load = instrument(ch.load);
            c->thermo = instrument(ch.thermo);
            if (!c->load->load) throw UsageError(fmt::format("{}: position {}: '{}' is not a load", cfg.file.string(), ch.position, ch.load));
            if (!c->thermo->thermo)
                throw UsageError(fmt::format("{}: position {}: '{}' is not a thermocouple reader", cfg.file.string(),
                                             ch.position, ch.thermo));
            if (const std::optional<ThermoRef> amb = cfg.ambient_for(ch)) {
                c->ambient_channel = amb->channel;
                if (amb->thermo != ch.thermo) {  // the station's ambient on another module
                    c->ambient = instrument(amb->thermo);
                    if (!c->ambient->thermo)
                        throw UsageError(fmt::format("{}: station.ambient: '{}' is not a thermocouple reader",
                                                     cfg.file.string(), amb->thermo));
                }
            }
            check_ratings(ch, *c->load);
            c->since_unix_s = unix_now_s();
            channels[ch.position] = std::move(c);
        }
        if (cfg.fixture_health.enabled && !cfg.fixture_health.golden_serials.empty()) {
            golden.configured = true;
            golden.due = true;  // at the station's start
            if (!cfg.panel.shift_start_min.empty()) golden.next_shift_unix_s = shift_bounds(unix_now_s(), cfg.panel.shift_start_min).second;
            for (const auto& g : cfg.fixture_health.golden_serials) {
                const DecodeResult d = scheme.decode(g);
                if (!d) throw UsageError(fmt::format("{}: fixture_health.golden_serials: '{}': {}", cfg.file.string(),
                                                     printable(g), d.error->message));
                golden.serials.push_back(d.value.serial);
            }
        }
        if (cfg.fixture_health.enabled) {
            // The history of this station: a position flagged and not
            // serviced since stays out of service across a restart.
            fixture.emplace(fixture_settings(cfg.fixture_health));
            replay_fixture(*store, cfg.fixture_health, cfg.station_id, &*fixture);
            for (auto& [pos, ch] : channels) publish_calibration(pos);
            for (auto& [pos, ch] : channels)
                if (auto a = fixture->alarm(pos)) {
                    ch->state = ChannelState::faulted;
                    ch->out_of_service = a->reason;
                    ch->reason = "fixture health: " + a->reason;
                    log().warn("fixture channel={}: out of service since before this start: {}", pos, a->reason);
                }
        }
        // Not in virtual time: its queries would land at wall-clock instants
        // between the participants' turns (a simulated Modbus module samples
        // every channel on any read) and the runs would not repeat.
        if (!opt.virtual_time) asio::co_spawn(loop, keepalive(), asio::detached);
        loop_thread = std::thread([this] { loop.run(); });
    }

    /// Every kKeepaliveS, each connected instrument no channel is testing on
    /// answers an identification query: a connection an instrument or a
    /// gateway would close for idleness stays open, and an instrument lost
    /// while idle is found (its channels fault, the reconnect loop starts)
    /// before a cell is put on it.
    static constexpr double kKeepaliveS = 2.0;
    awaitable<void> keepalive() {
        asio::steady_timer timer(loop);
        for (;;) {
            timer.expires_after(wall(kKeepaliveS));
            boost::system::error_code ec;
            co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            if (ec) co_return;
            for (auto& [name, inst] : instruments) {
                {
                    std::lock_guard lk(mutex);
                    if (shut_down) co_return;
                    if (!inst->usable() || inst->testing > 0) continue;
                }
                try {
                    Instrument* i = inst.get();
                    co_await on_lane(&i->lane, [i] {
                        if (i->load) i->load->identify();
                        else i->thermo->identify();
                    });
                } catch (const std::exception&) {
                    // reported through the timed driver (instrument_lost)
                }
            }
        }
    }

    ~Impl() { stop_loop(); }

    /// No recipe step may ask more current of a position's load channel than
    /// its capabilities (its dialect or map file) rate.
    void check_ratings(const ChannelConfig& ch, const Instrument& inst) const {
        const instruments::LoadCapabilities caps = inst.load->capabilities();
        if (ch.load_channel < 1 || ch.load_channel > caps.channels)
            throw UsageError(fmt::format("{}: position {}: load_channel {} but {} has {} channel(s) ({})",
                                         cfg.file.string(), ch.position, ch.load_channel, inst.cfg->name,
                                         caps.channels, inst.cfg->definition.string()));
        if (!std::isfinite(caps.max_current_a)) return;
        for (const RecipeStep& step : cfg.recipe.steps) {
            double i_a = 0;
            if (const auto* d = std::get_if<DcirParams>(&step.params)) i_a = d->high_a;
            else if (const auto* p = std::get_if<PulseParams>(&step.params)) i_a = p->current_a;
            else if (const auto* h = std::get_if<HeatParams>(&step.params)) i_a = h->current_a;
            if (i_a > caps.max_current_a)
                throw UsageError(fmt::format("{}: position {}: step '{}' draws {} A, above {}'s rating of {} A per "
                                             "channel ([capabilities] in {})",
                                             cfg.recipe.file.string(), ch.position, step.name, i_a, inst.cfg->name,
                                             caps.max_current_a, inst.cfg->definition.string()));
        }
    }

    void stop_loop() {
        if (stopped_loop) return;
        stopped_loop = true;
        work.reset();
        loop.stop();
        if (loop_thread.joinable()) loop_thread.join();
        if (drivers) drivers->join();
        if (compute) compute->join();
    }

    bool on_loop() { return loop.get_executor().running_in_this_thread(); }
    double station_now_s() const { return opt.virtual_time ? opt.virtual_time->now_s() : clock.now_s(); }
    /// Unix time on the clock the records are stamped with (scaled or virtual).
    double station_unix_now_s() const {
        return opt.virtual_time ? opt.virtual_time->unix_now_s() : clock.unix_now_s();
    }

    Channel& channel(int position) {
        const auto it = channels.find(position);
        if (it == channels.end()) {
            std::string have;
            for (const auto& [p, c] : channels) have += (have.empty() ? "" : ", ") + std::to_string(p);
            throw UsageError(fmt::format("no fixture position {} in {} (positions: {})", position, cfg.file.string(),
                                         have.empty() ? "none" : have));
        }
        return *it->second;
    }

    // ------------------------------------------------------------ instruments

    /// On the loop: an instrument stopped answering. Its idle channels
    /// fault; a reconnect loop starts (once).
    void instrument_lost(Instrument& inst, const std::string& why) {
        {
            std::lock_guard lk(mutex);
            if (inst.state == InstrumentState::disconnected) return;  // closed on purpose
            if (inst.state != InstrumentState::error)
                log().warn("instrument {} lost: {}; its channels fault until a fault reset, reconnecting", inst.cfg->name,
                           printable(why));
            inst.state = InstrumentState::error;
            inst.last_error = why;
            for (auto& [p, c] : channels)
                if ((c->load == &inst || c->thermo == &inst || c->ambient == &inst) && c->state != ChannelState::testing &&
                    c->state != ChannelState::faulted) {
                    c->state = ChannelState::faulted;
                    c->reason = fmt::format("instrument {} lost: {}", inst.cfg->name, why);
                    c->since_unix_s = unix_now_s();
                }
            if (inst.reconnecting || shut_down) return;
            inst.reconnecting = true;
        }
        asio::co_spawn(loop, reconnect(inst), asio::detached);
    }

    /// Reconnects with exponential backoff (0.5 s doubling to 8 s) until the
    /// instrument answers (identify) or the controller shuts down.
    awaitable<void> reconnect(Instrument& inst) {
        double backoff_s = 0.5;
        asio::steady_timer timer(loop);
        for (;;) {
            timer.expires_after(wall(backoff_s));
            boost::system::error_code ec;
            co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            {
                std::lock_guard lk(mutex);
                if (shut_down) {
                    inst.reconnecting = false;
                    co_return;
                }
                inst.state = InstrumentState::connecting;
                ++inst.reconnects;
            }
            std::string err;
            try {
                co_await on_lane(&inst.lane, [&inst] {
                    inst.close_driver();
                    inst.connect_driver();
                    if (inst.load) inst.load->identify();
                    else inst.thermo->identify();
                });
            } catch (const std::exception& e) {
                err = e.what();
            }
            std::lock_guard lk(mutex);
            if (err.empty()) {
                inst.state = InstrumentState::ready;
                inst.reconnecting = false;
                log().info("instrument {} reconnected (reconnects {})", inst.cfg->name, inst.reconnects);
                co_return;
            }
            log().debug("instrument {}: reconnect failed: {}; next attempt in {} s", inst.cfg->name, printable(err),
                        std::min(8.0, backoff_s * 2));
            inst.state = InstrumentState::error;
            inst.last_error = err;
            backoff_s = std::min(8.0, backoff_s * 2);
        }
    }

    /// Connects the instrument if it is not yet (on its lane). Throws the driver's error.
    awaitable<void> ensure_connected(Instrument& inst) {
        {
            std::lock_guard lk(mutex);
            if (inst.usable()) co_return;
            if (inst.state == InstrumentState::error || inst.reconnecting)
                throw instruments::ConnectionError(inst.cfg->name, "connect",
                                                   "the instrument is lost (" + inst.last_error + "); reconnecting");
            inst.state = InstrumentState::connecting;
        }
        try {
            co_await on_lane(&inst.lane, [&inst] { inst.connect_driver(); });
        } catch (const std::exception& e) {
            std::lock_guard lk(mutex);
            inst.state = InstrumentState::disconnected;
            inst.last_error = e.what();
            log().warn("instrument {}: cannot connect: {}", inst.cfg->name, printable(e.what()));
            throw;
        }
        log().info("instrument {} connected ({})", inst.cfg->name, inst.cfg->address);
        std::lock_guard lk(mutex);
        if (inst.state == InstrumentState::connecting) inst.state = InstrumentState::ready;
    }

    void connect_all() {
        for (auto& [name, inst] : instruments) {
            {
                std::lock_guard lk(mutex);
                if (inst->usable()) continue;
                inst->state = InstrumentState::connecting;
            }
            try {
                wait_on_lane(inst->lane, [i = inst.get()] { i->connect_driver(); });
            } catch (const std::exception& e) {
                std::lock_guard lk(mutex);
                inst->state = InstrumentState::disconnected;
                inst->last_error = e.what();
                log().error("instrument {}: cannot connect: {}", name, printable(e.what()));
                throw;
            }
            log().info("instrument {} connected ({})", name, inst->cfg->address);
            std::lock_guard lk(mutex);
            inst->state = InstrumentState::ready;
        }
    }

    // ------------------------------------------------------------ safety

    /// Switches the channel's load input off and reads it back until the
    /// current reads under kOffCurrentA or `timeout_s` (wall) passes. Never
    /// throws; the last problem in `why`.
    awaitable<bool> make_safe(Channel& c, double timeout_s, std::string& why) {
        const double deadline = steady_now_s() + timeout_s;
        const int ch = c.cfg->load_channel;
        asio::steady_timer timer(loop);
        bool reconnected = false;
        for (;;) {
            bool connection_lost = false;
            try {
                const auto r = co_await on_lane(&c.load->lane, [&c, ch] {
                    c.load->load->set_input(ch, false);
                    return c.load->load->measure(ch);
                });
                if (std::abs(r.i_a) < kOffCurrentA) co_return true;
                why = fmt::format("{} channel {} still reads {:.3f} A with the input off", c.load->cfg->name, ch, r.i_a);
            } catch (const instruments::ConnectionError& e) {
                why = e.what();
                connection_lost = true;
            } catch (const std::exception& e) {
                why = e.what();
            }
            // A closed connection (an instrument or a gateway that drops idle
            // clients, a cable pulled and plugged back): reconnect at once,
            // once, rather than wait for the backoff.
            if (connection_lost && !reconnected) {
                reconnected = true;
                try {
                    co_await on_lane(&c.load->lane, [&c] {
                        c.load->close_driver();
                        c.load->connect_driver();
                    });
                    continue;
                } catch (const std::exception& e) {
                    why += fmt::format("; reconnecting: {}", e.what());
                }
            }
            if (steady_now_s() >= deadline) co_return false;
            timer.expires_after(std::chrono::milliseconds(250));
            boost::system::error_code ec;
            co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
    }

    /// The safety monitor of one testing channel; see controller.hpp.
    awaitable<void> monitor(Channel& c, VirtualTurn turn) {
        const Limits& lim = cfg.limits;
        const double period_s = lim.control_period_s;
        // In station seconds: the same on the wall clock; what a period stands
        // for in virtual time (docs/controller.md).
        const double period_station_s = opt.virtual_time && opt.virtual_monitor_period_s > 0
                                            ? opt.virtual_monitor_period_s
                                            : period_s * opt.time_scale;
        VirtualTime* vt = turn.time();
        if (vt) co_await vt->turn(turn.ticket());
        asio::steady_timer timer(loop);
        c.monitor_timer = &timer;
        std::deque<std::pair<double, double>> history;  // (station s, °C)
        int off_setpoint = 0;
        const int lch = c.cfg->load_channel;
        const int tch = c.cfg->thermo_channel;
        while (c.monitoring) {
            if (vt) {
                co_await vt->sleep_s(turn.ticket(), period_station_s);
            } else {
                timer.expires_after(wall(period_s));
                boost::system::error_code ec;
                co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            }
            if (!c.monitoring) break;
            std::optional<Trip> trip;
            instruments::LoadReading r;
            instruments::TcReading tc;
            try {
                r = co_await on_lane(&c.load->lane, [&c, lch] { return c.load->load->measure(lch); });
                ThermoShare* share = shared_reads(*c.thermo);
                const double requested_s = steady_now_s();
                const auto all = co_await on_lane(&c.thermo->lane, [&c, share, requested_s] {
                    return read_module(*c.thermo->thermo, share, requested_s);
                });
                if (tch < 0 || static_cast<std::size_t>(tch) >= all.size())
                    throw instruments::InstrumentError(c.thermo->cfg->name, "read", "no channel " + std::to_string(tch));
                tc = all[static_cast<std::size_t>(tch)];
            } catch (const std::exception& e) {
                trip = Trip{"instrument", fmt::format("instrument error: {}", e.what()), false, true};
            }
            if (!c.monitoring) break;
            const double t_read = steady_now_s();
            const double t_station = station_now_s();
            if (!trip) {
                const LoadDemand& d = c.demand;
                const bool settled = t_station - c.demand_since_station_s > 2 * period_station_s;
                if (tc.status != instruments::TcStatus::ok) {
                    trip = Trip{"thermocouple",
                                fmt::format("thermocouple {} on {} channel {} (safety monitor)",
                                            instruments::to_string(tc.status), c.thermo->cfg->name, tch),
                                false, true};
                } else if (tc.temp_c > lim.temp_abort_c) {
                    trip = Trip{"over-temperature",
                                fmt::format("cell temperature {:.1f} °C above the abort limit {:.1f} °C (safety monitor)",
                                            tc.temp_c, lim.temp_abort_c),
                                true, false};
                } else {
                    history.emplace_back(t_station, tc.temp_c);
                    while (history.size() > 2 && t_station - history[1].first >= kRiseWindowS) history.pop_front();
                    const auto& [t_old, temp_old] = history.front();
                    if (t_station - t_old >= kRiseWindowS) {
                        const double rate = (tc.temp_c - temp_old) / (t_station - t_old);
                        if (rate > lim.temp_rate_max_k_per_s)
                            trip = Trip{"temperature rise",
                                        fmt::format("cell temperature rising {:.2f} K/s, faster than {:.2f} K/s "
                                                    "(safety monitor)",
                                                    rate, lim.temp_rate_max_k_per_s),
                                        true, false};
                    }
                }
                if (!trip && r.v_v > lim.v_max_v)
                    trip = Trip{"voltage",
                                fmt::format("terminal voltage {:.3f} V above {:.3f} V (safety monitor)", r.v_v, lim.v_max_v),
                                false, false};
                if (!trip && (d.input_on || d.profile) && settled && r.v_v < lim.v_min_v)
                    trip = Trip{"voltage",
                                fmt::format("terminal voltage {:.3f} V under load below {:.3f} V (safety monitor)",
                                            r.v_v, lim.v_min_v),
                                false, false};
                if (!trip && settled && !d.profile) {
                    const double tol = std::max(lim.i_follow_tol_a, 0.05 * std::abs(d.current_a));
                    const double want = d.input_on ? d.current_a : 0.0;
                    off_setpoint = std::abs(r.i_a - want) > std::max(tol, kOffCurrentA) ? off_setpoint + 1 : 0;
                    if (off_setpoint >= kFollowPeriods)
                        trip = Trip{"current",
                                    d.input_on ? fmt::format("measured current {:.3f} A does not follow the setpoint "
                                                             "{:.3f} A (safety monitor)",
                                                             r.i_a, d.current_a)
                                               : fmt::format("current {:.3f} A flows with the input off (safety monitor)",
                                                             r.i_a),
                                    false, true};
                } else if (!settled || d.profile) {
                    off_setpoint = 0;
                }
                std::lock_guard lk(mutex);
                c.v_v = r.v_v;
                c.i_a = r.i_a;
                c.temp_c = tc.temp_c;
            }
            if (trip) {
                // The make-safe path: input off first (the next command on the
                // load's lane), read back; then the run is aborted.
                std::string why;
                const bool off = co_await make_safe(c, 0.0, why);
                trip->to_off_s = off ? steady_now_s() - t_read : -1;
                if (off)
                    log().warn("safety trip channel={} cause={} input off {:.1f} ms after the reading: {}", c.cfg->position,
                               trip->cause, 1e3 * trip->to_off_s, trip->message);
                else
                    log().error("safety trip channel={} cause={}: {}; the load input is NOT confirmed off: {}",
                                c.cfg->position, trip->cause, trip->message, printable(why));
                c.trip = trip;
                c.clock.abort(trip->message);
                break;
            }
        }
        c.monitor_timer = nullptr;
    }

    // ------------------------------------------------------------ a cell

    void set_state(Channel& c, ChannelState s, const std::string& serial, const std::string& verdict,
                   const std::string& reason) {
        std::lock_guard lk(mutex);
        c.state = s;
        c.serial = serial;
        c.verdict = verdict;
        c.reason = reason;
        c.since_unix_s = unix_now_s();
        c.step.clear();
    }

    /// Stores the record with the others that finished meanwhile: the cell
    /// queues it, then waits for a drain on the store lane. The first drain
    /// to run writes every queued record in ONE transaction (one fsync for
    /// the cells of a round that end together, instead of one each, which
    /// the last of them waited for in turn); the later drains find their
    /// record written. Each record with its hazardous hold and test-time
    /// screening holds as before; if the batch's transaction fails, each
    /// record is tried alone, so one bad record costs no other.
    awaitable<void> store_batched(TestRecord& rec, CellResult& res, bool hazardous) {
        {
            std::lock_guard lk(store_queue_mutex);
            store_queue.push_back({&rec, &res, hazardous});
        }
        co_await on_lane(&*store_lane, [this] { drain_store_queue(); });
    }

    /// Store lane only.
    void drain_store_queue() {
        std::vector<PendingRecord> batch;
        {
            std::lock_guard lk(store_queue_mutex);
            batch.swap(store_queue);
        }
        if (batch.empty()) return;
        std::lock_guard lk(store_mutex);
        const double t0 = steady_now_s();
        for (const PendingRecord& p : batch) screen_at_test(*p.rec, *p.res);
        const double t_screened = steady_now_s();
        bool together = false;
        if (batch.size() > 1) {
            try {
                store->write_transaction([&] {
                    for (const PendingRecord& p : batch) write_one(*p.rec, *p.res, p.hazardous);
                    return true;
                });
                together = true;
            } catch (const std::exception&) {
                // rolled back; each alone below
            }
        }
        if (together) {
            for (const PendingRecord& p : batch) p.res->stored = true;
        } else {
            for (const PendingRecord& p : batch) {
                p.res->held_hazardous = false;
                write_alone(*p.rec, *p.res, p.hazardous);
            }
        }
        const double t_stored = steady_now_s();
        if (fixture)
            for (const PendingRecord& p : batch)
                if (p.res->stored) learn_fixture(*p.rec, *p.res);
        for (const PendingRecord& p : batch)
            if (is_golden(p.rec->serial)) check_golden(*p.rec, *p.res);
        if (opt.on_phase)
            for (const PendingRecord& p : batch) {
                opt.on_phase(p.rec->channel, "store.screen", 1e3 * (t_screened - t0));
                opt.on_phase(p.rec->channel, "store.write", 1e3 * (t_stored - t_screened));
            }
        for (const PendingRecord& p : batch) {
            for (RecordSink* s : sinks) {
                try {
                    s->consume(*p.rec);
                } catch (const std::exception& e) {
                    p.rec->abort_reason += fmt::format("; a record sink failed: {}", e.what());
                }
            }
            log().debug("record channel={} serial={} stored={} batch={} screen_ms={:.2f} store_ms={:.2f} sinks_ms={:.2f}",
                        p.rec->channel, p.rec->serial, p.res->stored, batch.size(), 1e3 * (t_screened - t0),
                        1e3 * (t_stored - t_screened), 1e3 * (steady_now_s() - t_stored));
            if (!p.res->stored) log().error("channel={} serial={}: {}", p.rec->channel, p.rec->serial, p.rec->abort_reason);
        }
    }

    bool is_golden(const std::string& serial) const {
        return golden.configured && std::find(golden.serials.begin(), golden.serials.end(), serial) != golden.serials.end();
    }

    /// The golden cell's record against the median of its last runs here
    /// (store lane, store_mutex held; the record is stored or not).
    void check_golden(const TestRecord& rec, CellResult& res) {
        const FixtureHealthConfig& fh = cfg.fixture_health;
        std::string why;
        bool passed = false;
        try {
            if (!res.stored) {
                why = "the golden record could not be stored";
            } else if (rec.verdict != Verdict::pass && rec.verdict != Verdict::fail) {
                why = fmt::format("the golden cell's test did not complete ({}: {})", to_string(rec.verdict),
                                  rec.abort_reason);
            } else {
                auto value = [](const std::vector<Measurement>& ms, const std::string& name) {
                    for (const auto& m : ms)
                        if (m.name == name && std::isfinite(m.value)) return m.value;
                    return std::numeric_limits<double>::quiet_NaN();
                };
                std::vector<RunInfo> earlier;
                for (const RunInfo& r : store->runs_for(rec.serial))
                    if (r.station_id == cfg.station_id && r.start_unix_s < rec.start_unix_s &&
                        (r.verdict == Verdict::pass || r.verdict == Verdict::fail))
                        earlier.push_back(r);
                if (earlier.size() > static_cast<std::size_t>(fh.golden_history))
                    earlier.erase(earlier.begin(), earlier.end() - fh.golden_history);
                std::vector<double> hist_r, hist_v;
                for (const RunInfo& r : earlier) {
                    const auto ms = store->measurements(r.id);
                    if (const double x = value(ms, fh.resistance); std::isfinite(x)) hist_r.push_back(x);
                    if (const double x = value(ms, "ocv_v"); std::isfinite(x)) hist_v.push_back(x);
                }
                const double r_now = value(rec.measurements, fh.resistance), v_now = value(rec.measurements, "ocv_v");
                std::vector<std::string> bad, said;
                auto compare = [&](const char* name, double now, const std::vector<double>& hist, double tol,
                                   double scale, const char* unit) {
                    if (hist.empty()) return;
                    std::vector<double> sorted = hist;
                    const double med = models::median_inplace(sorted);
                    said.push_back(fmt::format("{} {:.3f} {} against {:.3f} (median of {}, tolerance {:.3f})", name,
                                               now * scale, unit, med * scale, hist.size(), tol * scale));
                    if (!std::isfinite(now) || std::fabs(now - med) > tol) bad.push_back(said.back());
                };
                compare(fh.resistance.c_str(), r_now, hist_r, fh.golden_resistance_tol_ohm, 1e3, "mOhm");
                compare("ocv_v", v_now, hist_v, fh.golden_ocv_tol_v, 1.0, "V");
                if (earlier.empty() || said.empty()) {
                    passed = true;
                    why = "first golden run at this station: its history starts";
                } else if (bad.empty()) {
                    passed = true;
                    why = fmt::format("{}", fmt::join(said, "; "));
                } else {
                    why = fmt::format("{}", fmt::join(bad, "; "));
                }
            }
        } catch (const std::exception& e) {
            why = std::string("the golden check could not read the history: ") + e.what();
        }
        res.golden_passed = passed;
        res.golden_reason = why;
        log().log(passed ? spdlog::level::info : spdlog::level::warn, "golden check channel={} serial={} {}: {}",
                  rec.channel, rec.serial, passed ? "passed" : "FAILED", printable(why));
        try {
            StationEvent ev;
            ev.time_unix_s = unix_now_s();
            ev.station_id = cfg.station_id;
            ev.kind = "golden_check";
            ev.message = fmt::format("position {}: golden cell {} {}: {}", rec.channel, rec.serial,
                                     passed ? "passed" : "failed", why);
            ev.detail_json = fmt::format(R"({{"position": {}, "serial": "{}", "passed": {}}})", rec.channel,
                                         rec.serial, passed ? "true" : "false");
            store->append_station_event(ev);
        } catch (const std::exception& e) {
            log().error("golden check channel={}: the event could not be stored: {}", rec.channel, e.what());
        }
    }

    /// Fixture health: the stored record's reading; a position beyond its
    /// limit is taken out of service (store lane, store_mutex held).
    void learn_fixture(const TestRecord& rec, CellResult& res) {
        const auto alarm = fixture->add(fixture_reading(rec, cfg.fixture_health));
        publish_calibration(rec.channel);
        if (!alarm) return;
        res.fixture_alarm = alarm->reason;
        log().warn("fixture channel={} serial={}: out of service: {}", rec.channel, rec.serial, alarm->reason);
        try {
            StationEvent ev;
            ev.time_unix_s = unix_now_s();
            ev.station_id = cfg.station_id;
            ev.kind = std::string(kFixtureFlagEvent);
            ev.message = alarm->reason;
            ev.detail_json = fmt::format(R"({{"position": {}, "quantity": "{}", "value": {}, "limit": {}, "serial": "{}"}})",
                                         alarm->position, alarm->quantity, alarm->value, alarm->limit, rec.serial);
            store->append_station_event(ev);
        } catch (const std::exception& e) {
            log().error("fixture channel={}: the flag could not be stored: {}", rec.channel, e.what());
        }
    }

    /// Screening at test time, for a record that passed its limits (store
    /// lane, store_mutex held).
    void screen_at_test(const TestRecord& rec, CellResult& res) {
        if (rec.verdict != Verdict::pass || is_golden(rec.serial)) return;
        try {
            if (!screen) {
                TestTimeScreenOptions o;
                if (fixture) o.fixture = &cfg.fixture_health;  // the reference read as the judged record
                screen.emplace(TestTimeScreen::build(*store, rec.cell_model, cfg.screening, &cfg.recipe, rec.lot, o));
            }
            if (fixture)
                res.screening = screen->judge(
                    corrected_for_fixture(rec, cfg.fixture_health, fixture->contact_correction_ohm(rec.channel)), *store);
            else
                res.screening = screen->judge(rec, *store);
        } catch (const std::exception& e) {
            // Not screened is not a hold: the record says why; the lot
            // screening at lot close still judges it.
            TestTimeVerdict v;
            v.kind = TestTimeVerdict::Kind::not_judged;
            v.cell_model = rec.cell_model;
            v.reason = std::string("screening at test time failed: ") + e.what();
            res.screening = std::move(v);
        }
    }

    /// The record, its screening holds and a hazardous hold, inside the
    /// caller's transaction.
    void write_one(const TestRecord& rec, CellResult& res, bool hazardous) {
        const Actor station_actor{"eolstation controller", "station"};
        if (res.screening && res.screening->kind != TestTimeVerdict::Kind::not_judged)
            write_record_screened(*store, rec, *res.screening, station_actor, scheme);
        else
            store->write(rec);
        if (hazardous) {
            try {
                Quarantine q(*store, scheme);
                q.hold(Scope::serial(rec.serial),
                       "hazardous: aborted for over-temperature at test (" + rec.abort_reason + ")", station_actor);
            } catch (const QuarantineRefused&) {
                // already held (by someone else meanwhile): held it is
            }
            res.held_hazardous = true;
        }
    }

    /// One record in its own transaction; on failure the record alone
    /// rather than neither (a hazardous hold that cannot be written is said
    /// in the record), else verdict error naming the store.
    void write_alone(TestRecord& rec, CellResult& res, bool hazardous) {
        try {
            store->write_transaction([&] {
                write_one(rec, res, hazardous);
                return true;
            });
            res.stored = true;
        } catch (const std::exception& e) {
            res.held_hazardous = false;
            if (hazardous) {
                try {
                    store->write(rec);
                    res.stored = true;
                    rec.abort_reason += fmt::format("; the hazardous hold could not be recorded: {}", e.what());
                } catch (const std::exception&) {
                }
            }
            if (!res.stored) {
                rec.abort_reason = fmt::format("the record could not be stored in {}: {}{}{}", store_path.string(),
                                               e.what(), rec.abort_reason.empty() ? "" : "; ", rec.abort_reason);
                rec.verdict = Verdict::error;
            }
        }
    }

    /// One cell on the loop: connect, monitor, run, make safe, quarantine, store.
    /// `ticket`: the cell's turn in virtual time (joined by start()), or nullptr.
    awaitable<CellResult> run_cell(Channel& c, DecodedSerial cell, VirtualTime::Ticket ticket) {
        VirtualTime* vt = opt.virtual_time.get();
        VirtualTurn turn(ticket ? vt : nullptr, ticket);
        if (ticket) co_await vt->turn(ticket);
        c.clock.rearm(ticket);
        c.trip.reset();
        CellResult res;
        res.position = c.cfg->position;
        res.serial = cell.serial;
        CellIdentity id;
        id.serial = cell.serial;
        id.cell_model = cfg.recipe.cell_model;
        id.lot = cell.lot;
        id.production_date = cell.production_date ? cell.production_date->iso() : "";
        RunContext ctx;
        ctx.station_id = cfg.station_id;
        ctx.position = c.cfg->position;
        ctx.clock = &c.clock;
        ctx.compute = &*c.compute_lane;
        ctx.on_demand = [this, &c](const LoadDemand& d) {
            c.demand = d;
            c.demand_since_station_s = station_now_s();
        };
        if (opt.on_phase)
            ctx.on_phase = [this, position = c.cfg->position](const char* phase, double wall_ms) {
                opt.on_phase(position, phase, wall_ms);
            };
        ctx.on_step = [this, &c, serial = cell.serial](std::size_t index, const std::string& name) {
            log().info("step channel={} serial={} step={} index={}/{}", c.cfg->position, serial, name, index + 1,
                       cfg.recipe.steps.size());
            std::lock_guard lk(mutex);
            c.step = name;
            c.step_index = index;
        };
        {
            std::lock_guard lk(mutex);
            c.t0_station_s = station_now_s();
        }
        const double t0_wall_s = steady_now_s();
        log().info("cell start channel={} serial={} lot={} recipe={}", c.cfg->position, cell.serial, cell.lot,
                   cfg.recipe.name);
        ChannelIo io;
        io.load = c.load->load.get();
        io.load_channel = c.cfg->load_channel;
        io.load_lane = &c.load->lane;
        io.thermo = c.thermo->thermo.get();
        io.thermo_channel = c.cfg->thermo_channel;
        io.thermo_lane = &c.thermo->lane;
        io.thermo_share = shared_reads(*c.thermo);
        io.ambient_channel = c.ambient_channel;
        if (c.ambient) {
            io.ambient_thermo = c.ambient->thermo.get();
            io.ambient_lane = &c.ambient->lane;
            io.ambient_share = shared_reads(*c.ambient);
        }
        // The position's thermocouple offset, commissioned ([[channels]]
        // thermo_offset_k) or learned (fixture health): the heat step fits
        // P_x separated from it.
        if (io.ambient_channel)
            io.thermo_offset_k = c.cfg->thermo_offset_k ? c.cfg->thermo_offset_k : calibration_of(c.cfg->position);

        TestRecord rec;
        bool load_connected = false;  // before that, nothing can have been energized
        bool counted = false;         // the instruments count this test (Instrument::testing)
        std::string failure;
        try {
            co_await ensure_connected(*c.load);
            load_connected = true;
            co_await ensure_connected(*c.thermo);
            if (c.ambient) co_await ensure_connected(*c.ambient);
            {
                std::lock_guard lk(mutex);
                for (Instrument* inst : c.uses()) {
                    inst->state = InstrumentState::active;
                    ++inst->testing;
                }
                counted = true;
            }
            c.demand = LoadDemand{};
            c.demand_since_station_s = station_now_s();
            c.monitoring = true;
            c.monitor_ticket = ticket ? vt->join() : nullptr;
            asio::co_spawn(loop, monitor(c, VirtualTurn(ticket ? vt : nullptr, c.monitor_ticket)), asio::detached);
            rec = co_await run_recipe_async(cfg.recipe, cfg.limits, io, id, ctx);
        } catch (const std::exception& e) {
            failure = e.what();
        } catch (...) {
            failure = "unknown exception";
        }
        if (c.monitoring) {
            c.monitoring = false;
            if (c.monitor_timer) c.monitor_timer->cancel();
            if (c.monitor_ticket) vt->wake(c.monitor_ticket);  // its turn comes when this cell's ends
        }
        c.monitor_ticket = nullptr;
        {
            std::lock_guard lk(mutex);
            for (Instrument* inst : c.uses())
                if (counted && inst->testing > 0 && --inst->testing == 0 && inst->state == InstrumentState::active)
                    inst->state = InstrumentState::safe;
        }
        if (!failure.empty()) {
            rec = TestRecord{};
            rec.verdict = Verdict::error;
            rec.abort_reason = failure;
        }
        if (fill_identity(rec, cfg.recipe, id, cfg.station_id, c.cfg->position))  // the run never started
            rec.start_unix_s = rec.end_unix_s = unix_now_s();
        if (c.trip) {
            res.trip_cause = c.trip->cause;
            res.trip_to_off_s = c.trip->to_off_s;
            // A hazard of the cell (temperature, voltage) is an abort; an
            // equipment cause (an instrument, a thermocouple, a load whose
            // current does not follow) is an error that faults the channel.
            if (rec.verdict == Verdict::error || rec.verdict == Verdict::abort)
                rec.verdict = c.trip->fault ? Verdict::error : Verdict::abort;
            // The trip is the cause even when a step failed first on what it
            // did (a reading taken after the monitor switched the input off).
            if (rec.abort_reason.find(c.trip->message) == std::string::npos)
                rec.abort_reason = c.trip->message + (rec.abort_reason.empty() ? "" : "; then " + rec.abort_reason);
        }
        if (load_connected && (rec.verdict == Verdict::abort || rec.verdict == Verdict::error)) {
            std::string why;
            res.load_off_confirmed = co_await make_safe(c, opt.make_safe_timeout_s, why);
            if (!res.load_off_confirmed) rec.abort_reason += fmt::format("; load input NOT confirmed off: {}", why);
        }
        const bool hazardous = aborted_for_over_temperature(rec) || (c.trip && c.trip->hazardous);
        co_await store_batched(rec, res, hazardous);
        res.verdict = std::string(to_string(rec.verdict));
        res.reason = rec.abort_reason;
        if (res.stored && res.screening && res.screening->outlier()) {
            res.verdict = "hold";
            res.reason = "outlier at test: " + res.screening->reason;
        }
        const bool faulted = rec.verdict == Verdict::error || !res.load_off_confirmed || !res.stored ||
                             (c.trip && c.trip->fault);
        log_steps(c, rec);
        log().log(res.verdict == "pass" || res.verdict == "fail" || res.verdict == "hold" ? spdlog::level::info
                                                                                          : spdlog::level::warn,
                  "cell done channel={} serial={} verdict={} wall_s={:.3f} station_s={:.1f}{}{}{}", c.cfg->position,
                  rec.serial, res.verdict, steady_now_s() - t0_wall_s, rec.end_unix_s - rec.start_unix_s,
                  res.reason.empty() ? "" : " reason=", printable(res.reason), faulted ? " (channel faulted)" : "");
        set_state(c,
                  faulted                         ? ChannelState::faulted
                  : rec.verdict == Verdict::abort ? ChannelState::aborted
                                                  : ChannelState::complete,
                  rec.serial, res.verdict, res.reason);
        if (res.fixture_alarm) {
            // The cell's own verdict stands (its features were judged
            // corrected); the position tests no more cells until serviced.
            std::lock_guard lk(mutex);
            c.state = ChannelState::faulted;
            c.out_of_service = *res.fixture_alarm;
            c.reason = "fixture health: " + *res.fixture_alarm;
        }
        if (res.golden_passed) {
            std::lock_guard lk(mutex);
            if (*res.golden_passed) {
                golden.due = false;
                golden.last_pass_unix_s = unix_now_s();
            } else {
                golden.due = true;
                golden.blocked = fmt::format("golden check failed at position {}: {}", c.cfg->position, res.golden_reason);
                golden.blocked_position = c.cfg->position;
                c.state = ChannelState::faulted;
                c.reason = golden.blocked;
            }
        }
        res.record = std::move(rec);
        co_return res;
    }

    /// Debug: each step's station time against its nominal duration (where a
    /// recipe's time goes beyond the instrument time).
    void log_steps(const Channel& c, const TestRecord& rec) const {
        if (!log().should_log(spdlog::level::debug)) return;
        for (std::size_t k = 0; k < rec.steps.size() && k < cfg.recipe.steps.size(); ++k) {
            const StepRecord& s = rec.steps[k];
            const double took = s.end_unix_s - s.start_unix_s, nominal = cfg.recipe.steps[k].duration_s();
            log().debug("step done channel={} serial={} step={} outcome={} station_s={:.4f} nominal_s={:.4f} over_s={:+.4f}",
                        c.cfg->position, rec.serial, s.name, to_string(s.outcome), took, nominal, took - nominal);
        }
    }

    void finished_one() {
        std::lock_guard lk(mutex);
        --running;
        idle_cv.notify_all();
    }
};

Controller::Controller(StationConfig cfg, ControllerOptions options)
    : impl_(std::make_unique<Impl>(std::move(cfg), std::move(options))) {}

Controller::~Controller() {
    try {
        shutdown("controller destroyed");
    } catch (...) {
    }
}

const StationConfig& Controller::config() const { return impl_->cfg; }
const SerialScheme& Controller::scheme() const { return impl_->scheme; }
std::filesystem::path Controller::store_path() const { return impl_->store_path; }
boost::asio::any_io_executor Controller::executor() { return impl_->loop.get_executor(); }

void Controller::add_sink(RecordSink& sink) {
    std::lock_guard lk(impl_->store_mutex);
    impl_->sinks.push_back(&sink);
}

void Controller::connect_all() { impl_->connect_all(); }

void Controller::start(int position, std::string_view serial, std::function<void(const CellResult&)> done) {
    Impl& m = *impl_;
    Channel& c = m.channel(position);
    const DecodeResult dec = m.scheme.decode(serial);
    if (!dec) throw ControllerRefused(fmt::format("serial '{}': {}", printable(serial), dec.error->message));
    {
        std::lock_guard lk(m.mutex);
        if (m.shut_down) throw ControllerRefused("the station is shutting down");
        if (c.state == ChannelState::testing)
            throw ControllerRefused(fmt::format("position {} is testing {}", position, c.serial));
        if (c.state == ChannelState::faulted)
            throw ControllerRefused(fmt::format("position {} is faulted ({}); reset the fault first", position,
                                                c.reason));
        if (m.golden.configured) {
            const double now = unix_now_s();
            if (m.golden.next_shift_unix_s > 0 && now >= m.golden.next_shift_unix_s) {
                m.golden.due = true;  // a shift started
                m.golden.next_shift_unix_s = shift_bounds(now, m.cfg.panel.shift_start_min).second;
            }
            if (!m.golden.blocked.empty())
                throw GoldenCheckRequired(fmt::format("station blocked: {}; check the station, then reset the fault of "
                                                      "position {}",
                                                      m.golden.blocked, m.golden.blocked_position));
            if (m.golden.due && !m.is_golden(dec.value.serial))
                throw GoldenCheckRequired(fmt::format("golden check due: test a golden cell ({}) first",
                                                      fmt::join(m.golden.serials, ", ")));
        }
        c.state = ChannelState::testing;  // claimed: no second start() from here on
        c.serial = dec.value.serial;
        c.verdict.clear();
        c.reason.clear();
        c.step.clear();
        c.step_index = 0;
        c.v_v = c.i_a = c.temp_c = NAN;
        c.since_unix_s = unix_now_s();
        ++m.running;
    }
    // A held or scrapped unit is answered without touching the channel.
    std::optional<LookupResult> look;
    try {
        std::lock_guard lk(m.store_mutex);
        look = m.lookup->lookup(dec.value.serial);
        if (look->state == CellState::held || look->state == CellState::scrapped) {
            StationEvent ev;
            ev.time_unix_s = unix_now_s();
            ev.station_id = m.cfg.station_id;
            ev.kind = "hold_at_test";
            ev.message = fmt::format("position {}: {} not tested: {}", position, dec.value.serial, describe_holds(*look));
            m.store->append_station_event(ev);
        }
    } catch (...) {
        m.set_state(c, ChannelState::idle, dec.value.serial, "", "");
        m.finished_one();
        throw;
    }
    if (look->state == CellState::held || look->state == CellState::scrapped) {
        CellResult res;
        res.position = position;
        res.serial = dec.value.serial;
        res.verdict = "hold";
        res.reason = describe_holds(*look);
        log().info("cell done channel={} serial={} verdict=hold (not tested) reason={}", position, res.serial,
                   printable(res.reason));
        m.set_state(c, ChannelState::complete, res.serial, res.verdict, res.reason);
        m.finished_one();
        if (done) done(res);
        return;
    }
    // In virtual time the cell counts from now: time cannot run ahead of it
    // before the loop schedules it.
    VirtualTime::Ticket ticket = m.opt.virtual_time ? m.opt.virtual_time->join() : nullptr;
    asio::co_spawn(m.loop, m.run_cell(c, dec.value, std::move(ticket)),
                   [&m, done = std::move(done)](std::exception_ptr e, CellResult res) {
                       if (e) {  // run_cell catches everything; a last resort
                           res.verdict = "error";
                           res.reason = "internal error in the controller";
                           log().critical("channel={}: internal error in the controller", res.position);
                       }
                       m.finished_one();
                       if (done) {
                           try {
                               done(res);
                           } catch (...) {
                               // the caller's callback must not end the loop (nor the process)
                           }
                       }
                   });
}

CellResult Controller::test(int position, std::string_view serial) {
    if (impl_->on_loop()) throw std::logic_error("Controller::test() called on the controller's own loop");
    std::mutex mu;
    std::condition_variable cv;
    std::optional<CellResult> out;
    start(position, serial, [&](const CellResult& r) {
        std::lock_guard lk(mu);
        out = r;
        cv.notify_all();
    });
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return out.has_value(); });
    return std::move(*out);
}

bool Controller::abort(int position, const std::string& reason) {
    Channel& c = impl_->channel(position);
    std::lock_guard lk(impl_->mutex);
    if (c.state != ChannelState::testing) return false;
    asio::post(impl_->loop, [&c, reason] { c.clock.abort(reason); });
    return true;
}

void Controller::abort_all(const std::string& reason) {
    std::lock_guard lk(impl_->mutex);
    for (auto& [p, c] : impl_->channels)
        if (c->state == ChannelState::testing) asio::post(impl_->loop, [ch = c.get(), reason] { ch->clock.abort(reason); });
}

void Controller::fault_reset(int position) {
    Impl& m = *impl_;
    Channel& c = m.channel(position);
    {
        std::lock_guard lk(m.mutex);
        if (c.state == ChannelState::testing)
            throw ControllerRefused(fmt::format("position {} is testing {}", position, c.serial));
        for (Instrument* inst : c.uses())
            if (inst->state == InstrumentState::error || inst->state == InstrumentState::connecting)
                throw ControllerRefused(fmt::format("position {}: fault not reset: instrument {} is {} ({})", position,
                                                    inst->cfg->name, to_string(inst->state), inst->last_error));
    }
    auto attempt = [&m, &c]() -> awaitable<std::string> {
        try {
            co_await m.ensure_connected(*c.load);
        } catch (const std::exception& e) {
            co_return std::string(e.what());
        }
        std::string why;
        if (!co_await m.make_safe(c, 0.0, why)) co_return "the load input cannot be confirmed off: " + why;
        co_return std::string();
    };
    std::string problem;
    if (m.on_loop()) {
        throw std::logic_error("Controller::fault_reset() called on the controller's own loop");
    } else {
        std::promise<std::string> p;
        auto fut = p.get_future();
        asio::co_spawn(m.loop, attempt(), [&p](std::exception_ptr e, std::string r) {
            p.set_value(e ? std::string("internal error") : r);
        });
        problem = fut.get();
    }
    if (!problem.empty()) {
        log().warn("channel={}: fault not reset: {}", position, printable(problem));
        throw ControllerRefused(fmt::format("position {}: fault not reset: {}", position, problem));
    }
    std::string serviced;
    {
        std::lock_guard lk(m.mutex);
        serviced = c.out_of_service;
        if (m.golden.configured && !m.golden.blocked.empty() && m.golden.blocked_position == position) {
            log().info("golden: the block is lifted by the fault reset of position {}; a golden check is due", position);
            m.golden.blocked.clear();
            m.golden.blocked_position = 0;
            m.golden.due = true;
        }
    }
    if (!serviced.empty()) {
        // The position was serviced: its baseline is learned again from its
        // next cells (the event tells a later replay of the history).
        std::lock_guard lk(m.store_mutex);
        StationEvent ev;
        ev.time_unix_s = unix_now_s();
        ev.station_id = m.cfg.station_id;
        ev.kind = std::string(kFixtureServiceEvent);
        ev.message = fmt::format("position {} serviced and reset (was: {})", position, serviced);
        // The runs stored so far (run ids count up from 1; runs are never
        // deleted): a replay resets the position before its first later run,
        // whatever the clocks of the records (scaled, virtual, restarted).
        ev.detail_json = fmt::format(R"({{"position": {}, "after_run_id": {}, "station_unix_s": {:.6f}}})", position,
                                     m.store->count("test_runs"), m.station_unix_now_s());
        m.store->append_station_event(ev);
        if (m.fixture) {
            m.fixture->reset(position);
            m.publish_calibration(position);
        }
        log().info("fixture channel={}: back in service, baseline relearned", position);
    }
    log().info("channel={}: fault reset", position);
    std::lock_guard lk(m.mutex);
    c.out_of_service.clear();
    c.state = ChannelState::idle;
    c.verdict.clear();
    c.reason.clear();
    c.since_unix_s = unix_now_s();
}

GoldenStatus Controller::golden() const {
    std::lock_guard lk(impl_->mutex);
    GoldenStatus g = impl_->golden;
    if (g.configured && g.next_shift_unix_s > 0 && unix_now_s() >= g.next_shift_unix_s) g.due = true;
    return g;
}

std::vector<ChannelSnapshot> Controller::snapshot() const {
    const double now_station = impl_->station_now_s();
    std::lock_guard lk(impl_->mutex);
    std::vector<ChannelSnapshot> out;
    for (const auto& [p, c] : impl_->channels) {
        ChannelSnapshot s;
        s.position = p;
        s.state = c->state;
        s.serial = c->serial;
        s.verdict = c->verdict;
        s.reason = c->reason;
        s.since_unix_s = c->since_unix_s;
        s.out_of_service = !c->out_of_service.empty();
        if (c->state == ChannelState::testing) {
            s.step = c->step;
            s.step_index = c->step_index;
            s.step_count = impl_->cfg.recipe.steps.size();
            s.elapsed_s = now_station - c->t0_station_s;
            s.v_v = c->v_v;
            s.i_a = c->i_a;
            s.temp_c = c->temp_c;
        }
        out.push_back(std::move(s));
    }
    return out;
}

std::vector<InstrumentSnapshot> Controller::instruments() const {
    std::vector<InstrumentSnapshot> out;
    std::lock_guard lk(impl_->mutex);
    for (const auto& [name, inst] : impl_->instruments) {
        InstrumentSnapshot s;
        s.name = name;
        s.role = inst->load ? "load" : "thermo";
        s.definition = inst->cfg->definition.string();
        if (inst->load) {
            const auto caps = inst->load->capabilities();
            s.channels = caps.channels;
            s.max_current_a = caps.max_current_a;
            s.max_voltage_v = caps.max_voltage_v;
            s.max_power_w = caps.max_power_w;
            s.hardware_pulse = caps.hardware_pulse;
        } else {
            s.channels = inst->thermo->channels();
        }
        s.state = inst->state;
        s.last_error = inst->last_error;
        s.reconnects = inst->reconnects;
        std::vector<double> ring;
        {
            std::lock_guard hk(inst->health.m);
            s.commands = inst->health.commands;
            s.errors = inst->health.errors;
            if (s.last_error.empty()) s.last_error = inst->health.last_error;
            ring = inst->health.ring;
        }
        if (!ring.empty()) {
            std::sort(ring.begin(), ring.end());
            auto q = [&](double f) { return ring[static_cast<std::size_t>(f * static_cast<double>(ring.size() - 1))]; };
            s.command_p50_s = q(0.5);
            s.command_p99_s = q(0.99);
        }
        out.push_back(std::move(s));
    }
    return out;
}

std::vector<std::string> Controller::shutdown(const std::string& reason) {
    Impl& m = *impl_;
    if (m.on_loop()) throw std::logic_error("Controller::shutdown() called on the controller's own loop");
    {
        std::unique_lock lk(m.mutex);
        if (m.shut_down) return {};
        m.shut_down = true;
        log().info("shutdown: {}", printable(reason));
        for (auto& [p, c] : m.channels)
            if (c->state == ChannelState::testing) asio::post(m.loop, [ch = c.get(), reason] { ch->clock.abort(reason); });
        m.idle_cv.wait(lk, [&] { return m.running == 0; });  // every record stored, every `done` called
    }
    std::vector<std::string> problems;
    for (auto& [p, c] : m.channels) {
        {
            std::lock_guard lk(m.mutex);
            if (!c->load->usable() && c->load->state != InstrumentState::error) continue;  // never used
        }
        std::string why;
        std::promise<bool> pr;
        auto fut = pr.get_future();
        asio::co_spawn(m.loop, m.make_safe(*c, 0.0, why), [&pr](std::exception_ptr e, bool ok) { pr.set_value(!e && ok); });
        if (!fut.get()) {
            problems.push_back(fmt::format("position {}: load input not confirmed off: {}", p, why));
            log().error("shutdown: {}", problems.back());
        }
    }
    for (auto& [name, inst] : m.instruments) {
        {
            std::lock_guard lk(m.mutex);
            inst->state = InstrumentState::disconnected;
        }
        wait_on_lane(inst->lane, [i = inst.get()] { i->close_driver(); });
    }
    m.stop_loop();
    std::lock_guard lk(m.store_mutex);
    m.lookup.reset();
    m.store.reset();
    return problems;
}

}  // namespace eol::station
