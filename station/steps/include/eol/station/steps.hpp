// eol/station/steps.hpp — the step engine: every recipe step (rest, OCV,
// IEC 61960 DCIR, hardware-timed pulse with the load's logger, heating with
// its cooling) written once, against the instrument roles and a clock, and
// the recipe run over one fixture position that returns the finished,
// immutable TestRecord with a StepRecord per step.
//
// Everything that runs a recipe runs these steps: the demo and the tests
// over real sockets to the simulated instruments (ScaledWallClock), the
// simulated production in-process (eol::station_sim's roles over the cell
// physics and a clock that skips instead of sleeping), and the controller.
//
// Lifecycle: build a ChannelIo over connected drivers, then either await
// run_recipe_async() on an Asio executor (the controller: many channels as
// coroutines on one io_context) or call run_recipe() (a private io_context,
// run to completion on the calling thread). Steps never touch SQL: the
// caller hands the record to its sinks (record.hpp; the store is one).
//
// Scheduling (Boost.Asio, C++20 coroutines): a step never blocks a thread
// while it waits — StepClock::sleep_s is awaited (a steady_timer on a wall
// clock, an instant skip on a simulated one). Every driver call goes to its
// instrument's Lane: a strand on a small pool of driver threads, so commands
// to one instrument never interleave (two positions of one load mainframe,
// every position's thermocouple on one module), different instruments work
// in parallel, and the loop that runs the channels never waits on a socket.
// A ChannelIo without lanes calls its drivers inline (in-process simulated
// instruments, a single channel).
//
// Outcomes. Each step ends pass (its measurements judged and all passed),
// fail (one out of limits or not measured), aborted (a safety limit),
// timeout (an instrument did not answer or finish in time), or error (an
// instrument, data or fit failure, a step asking more current than
// limits.i_max_a); the steps after an aborted, timed-out or failed-with-error
// step are skipped. The record's verdict: abort after a safety abort, error
// after a timeout or error (abort_reason says which step and why), else
// decide_verdict() over the measurements. run_recipe() does not throw for
// anything that happens inside the steps — a fit that throws, bad data or a
// driver exception becomes the cell's verdict error with its reason — only
// for a ChannelIo without instruments or a RunContext without a clock
// (std::logic_error: a programming error).
//
// Safety: after every reading while current flows, a cell temperature above
// limits.temp_abort_c or a terminal voltage below limits.v_min_v aborts the
// run. In every case the channel's input is switched off before
// run_recipe() returns (best effort when the instrument itself failed).
//
// Timing: recipe durations are station seconds, kept by the StepClock.
// Measurements: each step declares them (MeasurementSpec); the step's
// quantities (config.hpp step_quantities) are recorded under the
// measurement's name and judged once with judge() (record.hpp).
// Fits: the pulse → "ecm2" (R0 + 2 RC); the heat step → "thermal" (C_th,
// R_th, τ, P_x, heating resistance, and p_heat_w = I²·R of the step, which
// the heat_rise_k_per_w feature divides by). The pulse's fit runs on the
// compute lane while the next step drives the instruments: the pulse step
// is judged once it is done (after the next step has run, before that one
// is judged), and a fit that fails makes the pulse step's outcome error and
// skips the steps after the one that ran beside it. The record is in recipe
// order either way.
#pragma once

#include <utility>  // before Asio's awaitable.hpp (Boost 1.74 uses std::exchange without it)

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "eol/instruments/roles.hpp"
#include "eol/models/ecm.hpp"
#include "eol/models/thermal.hpp"
#include "eol/station/config.hpp"
#include "eol/station/record.hpp"

namespace eol::station {

/// Station time for the steps. now_s() is monotonic station seconds;
/// unix_now_s() is the UTC time records are stamped with; sleep_s() waits
/// station seconds without blocking the thread (awaited on the caller's
/// executor). now_s/unix_now_s are thread-safe (several channels may share
/// one clock).
class StepClock {
public:
    virtual ~StepClock() = default;
    virtual double now_s() const = 0;
    virtual double unix_now_s() const = 0;
    virtual boost::asio::awaitable<void> sleep_s(double station_s) = 0;
    boost::asio::awaitable<void> sleep_until_s(double station_t);
    /// Station seconds per wall second when station time follows the wall
    /// clock (1 on a line, the scale of a compressed clock); 0 when it does
    /// not (simulated or virtual time, where waiting costs no wall time).
    /// The steps use it for what is set in wall time: how often to poll an
    /// instrument, and the least margin of a default step timeout.
    virtual double station_per_wall_s() const { return 0.0; }
};

/// Where an instrument's driver calls run, one at a time (see the top).
using Lane = boost::asio::strand<boost::asio::thread_pool::executor_type>;

/// Runs `f` on `lane` (one call at a time per instrument) and resumes the
/// awaiting coroutine on its own executor with f's result or exception;
/// without a lane (nullptr), inline.
template <class F>
boost::asio::awaitable<std::invoke_result_t<F&>> on_lane(const Lane* lane, F f) {
    using R = std::invoke_result_t<F&>;
    if constexpr (std::is_void_v<R>) {
        if (!lane) {
            f();
            co_return;
        }
        co_await boost::asio::co_spawn(
            *lane, [f]() mutable -> boost::asio::awaitable<void> { f(); co_return; }, boost::asio::use_awaitable);
    } else {
        if (!lane) co_return f();
        co_return co_await boost::asio::co_spawn(
            *lane, [f]() mutable -> boost::asio::awaitable<R> { co_return f(); }, boost::asio::use_awaitable);
    }
}

/// A computation started now and awaited later: `work` (an awaitable) is
/// spawned on the starting coroutine's executor and runs while that
/// coroutine goes on; get() waits until it has completed and returns its
/// result or rethrows its exception. E.g. the pulse's fit on the compute
/// lane while the next step drives the instruments. The executor must run
/// one handler at a time (the controller's loop, a strand): the completion
/// is handed to it by dispatch. Whoever started one must get() it before
/// anything `work` uses goes away (it cannot be cancelled). T must be
/// default-constructible (co_spawn's completion). Not thread-safe: start and
/// get on the same executor.
template <class T>
class Deferred {
public:
    Deferred() = default;
    static boost::asio::awaitable<Deferred> start(boost::asio::awaitable<T> work) {
        const boost::asio::any_io_executor ex = co_await boost::asio::this_coro::executor;
        Deferred d;
        d.state_ = std::make_shared<State>(ex);
        boost::asio::co_spawn(ex, std::move(work), [st = d.state_, ex](std::exception_ptr e, T v) {
            boost::asio::dispatch(ex, [st, e, v = std::move(v)]() mutable {
                if (e) st->error = e;
                else st->value.emplace(std::move(v));
                st->done = true;
                st->signal.cancel();
            });
        });
        co_return d;
    }
    /// Whether start() was called and get() not yet.
    bool pending() const { return state_ != nullptr; }
    /// Waits for the work; its result, or its exception rethrown. Once.
    boost::asio::awaitable<T> get() {
        const std::shared_ptr<State> st = std::move(state_);
        if (!st) throw std::logic_error("Deferred::get: nothing started");
        while (!st->done) {
            boost::system::error_code ec;
            co_await st->signal.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
        }
        if (st->error) std::rethrow_exception(st->error);
        co_return std::move(*st->value);
    }

private:
    struct State {
        explicit State(const boost::asio::any_io_executor& ex)
            : signal(ex, boost::asio::steady_timer::time_point::max()) {}
        boost::asio::steady_timer signal;
        std::optional<T> value;
        std::exception_ptr error;
        bool done = false;
    };
    std::shared_ptr<State> state_;
};

/// Awaits `a` here while `b` runs beside it (a Deferred), and returns both
/// results: e.g. two instruments read at once, each through on_lane. Both
/// have completed when it returns, also when one throws (a's exception is
/// rethrown before b's), so `b` may use what the caller holds. The executor
/// must run one handler at a time (the controller's loop, a strand). A and B
/// must be default-constructible (co_spawn's completion).
template <class A, class B>
boost::asio::awaitable<std::pair<A, B>> both(boost::asio::awaitable<A> a, boost::asio::awaitable<B> b) {
    Deferred<B> beside = co_await Deferred<B>::start(std::move(b));
    std::optional<A> here;
    std::exception_ptr here_error;
    try {
        here.emplace(co_await std::move(a));
    } catch (...) {
        here_error = std::current_exception();
    }
    std::optional<B> there;
    std::exception_ptr there_error;
    try {
        there.emplace(co_await beside.get());
    } catch (...) {
        there_error = std::current_exception();
    }
    if (here_error) std::rethrow_exception(here_error);
    if (there_error) std::rethrow_exception(there_error);
    co_return std::pair<A, B>{std::move(*here), std::move(*there)};
}

/// Real time: `time_scale` station seconds pass per wall second (1 on a
/// line; the simulators' scale when driving them). std::invalid_argument
/// unless time_scale > 0.
class ScaledWallClock final : public StepClock {
public:
    explicit ScaledWallClock(double time_scale = 1.0);
    double now_s() const override;
    double unix_now_s() const override;
    /// A steady_timer on the awaiting coroutine's executor.
    boost::asio::awaitable<void> sleep_s(double station_s) override;
    double station_per_wall_s() const override { return time_scale_; }
    double time_scale() const { return time_scale_; }

private:
    double time_scale_;
    double t0_steady_s_;
};

/// Stops a run on purpose (an operator, a shutdown, a monitor): thrown by
/// the run's StepClock::sleep_s (or anything else the steps call), it ends
/// the current step as aborted with what() as its reason, switches the
/// channel's input off and skips the remaining steps (verdict abort).
class RunAborted : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Whether `record` was aborted because the cell temperature went over
/// limits.temp_abort_c (the safety abort whose cell is held as hazardous).
bool aborted_for_over_temperature(const TestRecord& record);

/// The thermal fit's options of a heat step, as the step fits its window
/// (one place for the step, bench_thermal_search and the tests): three RC
/// pairs in the circuit that gives the heat, and the reversible heat given
/// as known — the step's own entropic_v, or the recipe's [cell.entropy]
/// table read at the cell's OCV `ocv_v` (V) and the window's first cell
/// temperature `t_start_c` (°C) over the step's charge. The sensor-offset
/// and extended (k fitted) variants are the step's own business.
struct HeatFitOptions {
    models::ThermalOptions thermal;
    std::optional<double> entropy_soc;  // where [cell.entropy] was read, when it was
};
/// Empty when the recipe declares [cell.entropy] and `ocv_v` is not finite
/// (no OCV step measured it): the step errs, a tool skips the cell.
std::optional<HeatFitOptions> heat_fit_options(const HeatParams& p, const Recipe& recipe, double ocv_v,
                                               double t_start_c);

/// The samples [first, first + count) of a run's stored trace as one step's
/// window; the ambient column is dropped unless every sample has one (as a
/// position without an ambient sensor records it). Throws
/// std::out_of_range when the trace is shorter than the step says.
models::Series step_window(const models::Series& trace, std::size_t first, std::size_t count);

/// A thermocouple module's last whole reading, shared by every position and
/// safety monitor that reads that module: a request is answered by a read
/// that BEGAN after the request was made — never older than the request —
/// so that requests queued behind one another on a busy module (8–16
/// positions and their monitors on one module) take one bus transaction
/// instead of one each. Used on the module's lane only (one call at a
/// time: no lock). Not for virtual time, where which reads happen must not
/// depend on the threads' timing (a simulated module samples its noise on
/// every read).
class ThermoShare {
public:
    /// On the module's lane: `reader.read_all()`, or the readings of a read
    /// begun at or after `requested_s` (steady clock, s: steady_now_s()).
    /// A read that throws is not kept.
    std::vector<instruments::TcReading> read(instruments::TemperatureReader& reader, double requested_s);
    /// The steady clock in seconds, for `requested_s`.
    static double steady_now_s();
    std::uint64_t reads() const { return reads_; }    // bus transactions made
    std::uint64_t shared() const { return shared_; }  // requests answered without one

private:
    double started_s_ = -1.0;
    std::vector<instruments::TcReading> readings_;
    std::uint64_t reads_ = 0, shared_ = 0;
};

/// On the module's lane: `share->read(reader, requested_s)`, or
/// `reader.read_all()` without a share (nullptr).
std::vector<instruments::TcReading> read_module(instruments::TemperatureReader& reader, ThermoShare* share,
                                                double requested_s);

struct ChannelIo {
    instruments::ElectronicLoad* load = nullptr;
    int load_channel = 1;
    const Lane* load_lane = nullptr;      // nullptr: driver calls inline
    instruments::TemperatureReader* thermo = nullptr;
    int thermo_channel = 0;
    const Lane* thermo_lane = nullptr;    // nullptr: driver calls inline
    ThermoShare* thermo_share = nullptr;  // the module's shared reading (nullptr: a read per request)
    // The ambient thermocouple (the thermal fit's T_amb): channel
    // `ambient_channel` of `ambient_thermo`, or of `thermo` when that is
    // nullptr (the same module). Another module's channel is read on
    // `ambient_lane` (that instrument's lane, so its other commands never
    // interleave; nullptr: inline), right after the cell's reading.
    // No ambient_channel: the position cannot measure P_x (p_x_w missing).
    std::optional<int> ambient_channel;
    instruments::TemperatureReader* ambient_thermo = nullptr;
    const Lane* ambient_lane = nullptr;
    ThermoShare* ambient_share = nullptr;  // that module's shared reading (nullptr: a read per request)
    // Calibrated offset of this channel's cell thermocouple against the
    // ambient one, K: the steady offset c a typical cell's heat fit reads
    // at this position (fixture health learns it from the steady_offset_k
    // each heat step records). Set: p_x_w is P_x read against it — the plain
    // fit's (c − o)/R_th, or, when the step cools ≥ 1800 s (about τ; shorter,
    // k is not determined), the extended fit with the reversible heat k·I
    // and this offset. Unset: the plain fit, which assumes no offset (a
    // ±0.5 K type-K offset then reads as ±o/R_th of P_x). Without an ambient
    // channel p_x_w is missing either way.
    std::optional<double> thermo_offset_k;
};

/// What the steps have asked of the load, told to RunContext::on_demand at
/// every change: the reference of a safety monitor that checks that the
/// measured current follows the setpoint. `profile` is true while a
/// hardware-timed pulse runs inside the instrument (the setpoint then
/// changes without the steps; a monitor cannot follow it sample by sample).
struct LoadDemand {
    bool input_on = false;
    double current_a = 0;  // the CC setpoint, discharge positive
    bool profile = false;
};

struct CellIdentity {
    std::string serial;  // normalized
    std::string cell_model;
    std::string lot;
    std::string production_date;  // YYYY-MM-DD or ""
};

/// The fits the steps run; replaceable (tests make one throw).
struct StepFits {
    std::function<models::EcmFit(const models::Series&, const models::EcmOptions&)> ecm;
    std::function<models::ThermalFit(const models::Series&, const models::ThermalOptions&)> thermal;
    /// models::fit_ecm and models::fit_thermal.
    static StepFits standard();
};

struct RunContext {
    std::string station_id;
    int position = 0;
    StepClock* clock = nullptr;           // required
    std::shared_ptr<const StepFits> fits; // nullptr: StepFits::standard()
    /// Where the fits run (pure computation, tens of ms): a strand on a
    /// compute pool, so that several channels' fits run side by side and
    /// the run's executor (the controller's loop) stays free; nullptr: inline.
    const Lane* compute = nullptr;
    /// Trace samples kept in the record: all (true) or only the pulse's (the
    /// simulated production's compact records, ~10 kB a cell, or none).
    enum class Trace { all, pulse_only, none } trace = Trace::all;
    /// Told every change of what the load is asked (may be empty). Called on
    /// the run's executor, before the command goes to the instrument when
    /// the input turns on and after it when it turns off.
    std::function<void(const LoadDemand&)> on_demand;
    /// Told when a step starts: its index in the recipe (0-based) and name
    /// (may be empty; on the run's executor).
    std::function<void(std::size_t index, const std::string& name)> on_step;
    /// Told, as each ends, the wall time of the phases of the pulse and heat
    /// steps that lie outside their timed waits — instrument calls and fits:
    /// "pulse.arm" (input on, arm, trigger), "pulse.temps_late" (the last
    /// temperatures past the profile's end), "pulse.fetch" (done, fetch,
    /// input off), "pulse.fit", "heat.first_sample", "heat.on", "heat.off",
    /// "heat.heating_late" / "heat.cooling_late" (a window's end past its
    /// nominal end), "heat.fit" — in ms. Where the software overhead of a
    /// cell goes (bench_controller); may be empty; on the run's executor.
    std::function<void(const char* phase, double wall_ms)> on_phase;
};

/// Runs `recipe` on one position; see the top of this header. Every
/// argument must outlive the returned awaitable.
boost::asio::awaitable<TestRecord> run_recipe_async(const Recipe& recipe, const Limits& limits, const ChannelIo& io,
                                                    const CellIdentity& cell, const RunContext& ctx);
/// Gives a record whose run never started (its serial empty: a connect
/// failed, something threw past the steps) the identity of its cell, recipe,
/// station and position, so it is still stored as that cell's. Returns
/// whether it did; a started record is left alone.
bool fill_identity(TestRecord& rec, const Recipe& recipe, const CellIdentity& cell, const std::string& station_id,
                   int position);

/// run_recipe_async() on a private io_context, to completion, on the calling thread.
TestRecord run_recipe(const Recipe& recipe, const Limits& limits, const ChannelIo& io, const CellIdentity& cell,
                      const RunContext& ctx);

/// One position of a multi-channel round.
struct ChannelJob {
    ChannelIo io;
    CellIdentity cell;
    int position = 0;
    std::shared_ptr<const StepFits> fits;  // nullptr: the run context's
};

/// Runs `jobs` concurrently — coroutines on one io_context on the calling
/// thread, each instrument's driver calls on its own Lane (made here from
/// the jobs' driver pointers; the jobs' own lanes are ignored) — and hands
/// each finished record to every sink in turn, one record at a time. A failure inside one
/// channel never ends the others or the process: whatever escapes a channel
/// becomes that record's verdict error. Returns the records in job order.
/// A sink that throws does not stop the round; the first sink error is
/// rethrown after every channel has finished (a record the store could not
/// take is an error of the station, never silently lost).
std::vector<TestRecord> run_channels(const Recipe& recipe, const Limits& limits, std::span<const ChannelJob> jobs,
                                     const RunContext& ctx, std::span<RecordSink* const> sinks = {});

}  // namespace eol::station
