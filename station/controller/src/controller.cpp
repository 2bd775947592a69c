#include "eol/station/controller.hpp"

#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "eol/instruments/roles.hpp"
#include "eol/station/errors.hpp"
#include "eol/station/instrument_factory.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/steps.hpp"
#include "eol/station/store.hpp"
#include "eol/station/text.hpp"

namespace eol::station {

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

namespace {

double unix_now_s() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// A load reading this small is "off" (the simulators and real loads read a
/// few mA of offset with the input off).
constexpr double kOffCurrentA = 0.05;

/// One channel's clock: station time from the shared scaled wall clock, and
/// waits that an abort interrupts at once (RunAborted).
class ChannelClock final : public StepClock {
public:
    explicit ChannelClock(const ScaledWallClock& base) : base_(base) {}
    double now_s() const override { return base_.now_s(); }
    double unix_now_s() const override { return base_.unix_now_s(); }
    void sleep_s(double station_s) override {
        std::unique_lock lk(m_);
        if (!aborted_ && station_s > 0)
            cv_.wait_for(lk, std::chrono::duration<double>(station_s / base_.time_scale()), [&] { return aborted_; });
        if (aborted_) throw RunAborted(reason_);
    }
    void abort(const std::string& reason) {
        {
            std::lock_guard lk(m_);
            if (aborted_) return;
            aborted_ = true;
            reason_ = reason;
        }
        cv_.notify_all();
    }
    void rearm() {
        std::lock_guard lk(m_);
        aborted_ = false;
        reason_.clear();
    }

private:
    const ScaledWallClock& base_;
    std::mutex m_;
    std::condition_variable cv_;
    bool aborted_ = false;
    std::string reason_;
};

struct Instrument {
    const InstrumentConfig* cfg = nullptr;
    std::unique_ptr<instruments::ElectronicLoad> load;
    std::unique_ptr<instruments::TemperatureReader> thermo;
    std::mutex mutex;  // every command to this instrument
    bool connected = false;  // guarded by mutex

    void ensure_connected() {
        std::lock_guard lk(mutex);
        if (connected) return;
        if (load) load->connect();
        else thermo->connect();
        connected = true;
    }
};

struct Channel {
    explicit Channel(const ScaledWallClock& base) : clock(base) {}
    const ChannelConfig* cfg = nullptr;
    Instrument* load = nullptr;
    Instrument* thermo = nullptr;
    std::optional<int> ambient_channel;
    ChannelClock clock;
    // Guarded by Impl::mutex:
    ChannelState state = ChannelState::idle;
    std::string serial, verdict, reason;
    double since_unix_s = 0;
    std::thread worker;
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

    std::map<std::string, std::unique_ptr<Instrument>> instruments;
    std::map<int, std::unique_ptr<Channel>> channels;

    mutable std::mutex mutex;  // channel states, shut_down
    bool shut_down = false;

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

        for (const ChannelConfig& ch : cfg.channels) {
            auto instrument = [&](const std::string& name) -> Instrument* {
                auto& slot = instruments[name];
                if (!slot) {
                    const InstrumentConfig* ic = cfg.find_instrument(name);
                    if (!ic) throw UsageError(fmt::format("{}: channels: position {} names instrument '{}', which is not configured",
                                                          cfg.file.string(), ch.position, name));
                    slot = std::make_unique<Instrument>();
                    slot->cfg = ic;
                    if (ic->is_load()) slot->load = make_load(*ic);
                    else slot->thermo = make_thermo(*ic);
                }
                return slot.get();
            };
            auto c = std::make_unique<Channel>(clock);
            c->cfg = &ch;
            c->load = instrument(ch.load);
            c->thermo = instrument(ch.thermo);
            if (cfg.ambient && cfg.ambient->thermo == ch.thermo) c->ambient_channel = cfg.ambient->channel;
            c->since_unix_s = unix_now_s();
            channels[ch.position] = std::move(c);
        }
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

    ChannelIo io_of(Channel& c) const {
        ChannelIo io;
        io.load = c.load->load.get();
        io.load_channel = c.cfg->load_channel;
        io.load_mutex = &c.load->mutex;
        io.thermo = c.thermo->thermo.get();
        io.thermo_channel = c.cfg->thermo_channel;
        io.thermo_mutex = &c.thermo->mutex;
        io.ambient_channel = c.ambient_channel;
        return io;
    }

    /// Switches the channel's load input off and reads it back, until the
    /// current reads under kOffCurrentA or `timeout_s` (wall) passes. Never
    /// throws; the last problem in `why`.
    bool make_safe(Channel& c, double timeout_s, std::string& why) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
        for (;;) {
            try {
                std::lock_guard lk(c.load->mutex);
                c.load->load->set_input(c.cfg->load_channel, false);
                const auto r = c.load->load->measure(c.cfg->load_channel);
                if (std::abs(r.i_a) < kOffCurrentA) return true;
                why = fmt::format("{} channel {} still reads {:.3f} A with the input off", c.load->cfg->name,
                                  c.cfg->load_channel, r.i_a);
            } catch (const std::exception& e) {
                why = e.what();
            }
            if (std::chrono::steady_clock::now() >= deadline) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(250));
        }
    }

    void set_state(Channel& c, ChannelState s, const std::string& serial, const std::string& verdict,
                   const std::string& reason) {
        std::lock_guard lk(mutex);
        c.state = s;
        c.serial = serial;
        c.verdict = verdict;
        c.reason = reason;
        c.since_unix_s = unix_now_s();
    }

    /// The worker: connect, run, make safe, quarantine, store, sinks.
    CellResult run_cell(Channel& c, const DecodedSerial& cell) {
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
        TestRecord rec;
        bool load_connected = false;  // before that, nothing can have been energized
        try {
            c.load->ensure_connected();
            load_connected = true;
            c.thermo->ensure_connected();
            rec = run_recipe(cfg.recipe, cfg.limits, io_of(c), id, ctx);
        } catch (const std::exception& e) {
            rec = TestRecord{};
            rec.verdict = Verdict::error;
            rec.abort_reason = e.what();
        } catch (...) {
            rec = TestRecord{};
            rec.verdict = Verdict::error;
            rec.abort_reason = "unknown exception";
        }
        if (rec.serial.empty()) {  // the run never started: still a record of this cell
            rec.serial = id.serial;
            rec.cell_model = id.cell_model;
            rec.lot = id.lot;
            rec.production_date = id.production_date;
            rec.station_id = cfg.station_id;
            rec.channel = c.cfg->position;
            rec.recipe_name = cfg.recipe.name;
            rec.recipe_version = cfg.recipe.file.filename().string();
            rec.start_unix_s = rec.end_unix_s = unix_now_s();
        }
        if (load_connected && (rec.verdict == Verdict::abort || rec.verdict == Verdict::error)) {
            std::string why;
            res.load_off_confirmed = make_safe(c, opt.make_safe_timeout_s, why);
            if (!res.load_off_confirmed)
                rec.abort_reason += fmt::format("; load input NOT confirmed off: {}", why);
        }
        {
            std::lock_guard lk(store_mutex);
            // The record, and for an over-temperature abort the hazardous
            // hold, in ONE transaction (Quarantine joins it): a crash cannot
            // leave the abort stored without its hold.
            const bool hazardous = aborted_for_over_temperature(rec);
            const std::string hold_reason = "hazardous: aborted for over-temperature at test (" + rec.abort_reason + ")";
            auto hold = [&] {
                try {
                    Quarantine q(*store, scheme);
                    q.hold(Scope::serial(rec.serial), hold_reason, Actor{"eolstation controller", "station"});
                } catch (const QuarantineRefused&) {
                    // already held (by someone else meanwhile): held it is
                }
                res.held_hazardous = true;
            };
            try {
                store->write_transaction([&] {
                    store->write(rec);
                    if (hazardous) hold();
                    return true;
                });
                res.stored = true;
            } catch (const std::exception& e) {
                res.held_hazardous = false;
                if (hazardous) {
                    // The record alone rather than neither; the hold's failure said.
                    try {
                        store->write(rec);
                        res.stored = true;
                        rec.abort_reason += fmt::format("; the hazardous hold could not be recorded: {}", e.what());
                    } catch (const std::exception&) {
                    }
                }
                if (!res.stored)
                    rec.abort_reason = fmt::format("the record could not be stored in {}: {}{}{}", store_path.string(),
                                                   e.what(), rec.abort_reason.empty() ? "" : "; ", rec.abort_reason);
                if (!res.stored) rec.verdict = Verdict::error;
            }
            for (RecordSink* s : sinks) {
                try {
                    s->consume(rec);
                } catch (const std::exception& e) {
                    rec.abort_reason += fmt::format("; a record sink failed: {}", e.what());
                }
            }
        }
        res.verdict = std::string(to_string(rec.verdict));
        res.reason = rec.abort_reason;
        const bool faulted = rec.verdict == Verdict::error || !res.load_off_confirmed || !res.stored;
        set_state(c,
                  faulted                            ? ChannelState::faulted
                  : rec.verdict == Verdict::abort    ? ChannelState::aborted
                                                     : ChannelState::complete,
                  rec.serial, res.verdict, res.reason);
        res.record = std::move(rec);
        return res;
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

void Controller::add_sink(RecordSink& sink) {
    std::lock_guard lk(impl_->store_mutex);
    impl_->sinks.push_back(&sink);
}

void Controller::connect_all() {
    for (auto& [name, inst] : impl_->instruments) inst->ensure_connected();
}

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
        c.clock.rearm();  // under the lock: an abort_all() after this point reaches the run
        c.state = ChannelState::testing;  // claimed: no second start() from here on
        c.serial = dec.value.serial;
        c.verdict.clear();
        c.reason.clear();
        c.since_unix_s = unix_now_s();
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
        throw;
    }
    if (look->state == CellState::held || look->state == CellState::scrapped) {
        CellResult res;
        res.position = position;
        res.serial = dec.value.serial;
        res.verdict = "hold";
        res.reason = describe_holds(*look);
        m.set_state(c, ChannelState::complete, res.serial, res.verdict, res.reason);
        if (done) done(res);
        return;
    }
    // The previous cell's worker has finished its run (the state was not
    // testing); join it. (So `done` must not call start() on its own channel.)
    if (c.worker.joinable()) c.worker.join();
    c.worker = std::thread([&m, &c, cell = dec.value, done = std::move(done)] {
        CellResult res = m.run_cell(c, cell);
        if (done) {
            try {
                done(res);
            } catch (...) {
                // the caller's callback must not end the worker (nor the process)
            }
        }
    });
}

CellResult Controller::test(int position, std::string_view serial) {
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
    c.clock.abort(reason);
    return true;
}

void Controller::abort_all(const std::string& reason) {
    std::lock_guard lk(impl_->mutex);
    for (auto& [p, c] : impl_->channels)
        if (c->state == ChannelState::testing) c->clock.abort(reason);
}

void Controller::fault_reset(int position) {
    Impl& m = *impl_;
    Channel& c = m.channel(position);
    {
        std::lock_guard lk(m.mutex);
        if (c.state == ChannelState::testing)
            throw ControllerRefused(fmt::format("position {} is testing {}", position, c.serial));
    }
    std::string why;
    try {
        c.load->ensure_connected();
    } catch (const std::exception& e) {
        throw ControllerRefused(fmt::format("position {}: fault not reset: {}", position, e.what()));
    }
    if (!m.make_safe(c, 0.0, why))
        throw ControllerRefused(
            fmt::format("position {}: fault not reset: the load input cannot be confirmed off: {}", position, why));
    std::lock_guard lk(m.mutex);
    c.state = ChannelState::idle;
    c.verdict.clear();
    c.reason.clear();
    c.since_unix_s = unix_now_s();
}

std::vector<ChannelSnapshot> Controller::snapshot() const {
    std::lock_guard lk(impl_->mutex);
    std::vector<ChannelSnapshot> out;
    for (const auto& [p, c] : impl_->channels)
        out.push_back(ChannelSnapshot{p, c->state, c->serial, c->verdict, c->reason, c->since_unix_s});
    return out;
}

std::vector<std::string> Controller::shutdown(const std::string& reason) {
    Impl& m = *impl_;
    {
        std::lock_guard lk(m.mutex);
        if (m.shut_down) return {};
        m.shut_down = true;
        for (auto& [p, c] : m.channels)
            if (c->state == ChannelState::testing) c->clock.abort(reason);
    }
    for (auto& [p, c] : m.channels)
        if (c->worker.joinable()) c->worker.join();
    std::vector<std::string> problems;
    for (auto& [p, c] : m.channels) {
        bool connected = false;
        {
            std::lock_guard lk(c->load->mutex);
            connected = c->load->connected;
        }
        if (!connected) continue;  // never used: nothing to switch off
        std::string why;
        if (!m.make_safe(*c, 0.0, why))
            problems.push_back(fmt::format("position {}: load input not confirmed off: {}", p, why));
    }
    for (auto& [name, inst] : m.instruments) {
        std::lock_guard lk(inst->mutex);
        try {
            if (inst->connected) {
                if (inst->load) inst->load->close();
                else inst->thermo->close();
            }
        } catch (...) {
        }
        inst->connected = false;
    }
    std::lock_guard lk(m.store_mutex);
    m.lookup.reset();
    m.store.reset();
    return problems;
}

}  // namespace eol::station
