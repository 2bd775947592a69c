#include "eol/sim/scpi_load_server.hpp"

// <utility> first: Boost 1.74 asio/awaitable.hpp uses std::exchange without it.
#include <utility>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
// Asio 1.74 trips -Wnull-dereference at -O3 inside its own scheduler code
// (a middle-end warning the system-header rule does not catch).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <boost/asio.hpp>
#pragma GCC diagnostic pop
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

namespace eol::sim {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using instruments::Cmd;
using instruments::Dialect;

namespace {

// ------------------------------------------------------------ templates
//
// A template is compiled to tokens: literal text (normalized) and typed
// placeholders. Incoming commands are normalized the same way and matched in
// full, with backtracking over list lengths.

enum class PhKind { number, integer, list };

struct Token {
    bool literal = true;
    std::string text;  // literal text, or the placeholder name
    PhKind kind = PhKind::number;
};

struct Captures {
    std::optional<double> value, interval;
    std::optional<long> step, count, points, ch;
    std::vector<double> levels, durations;
};

PhKind kind_of(std::string_view name) {
    if (name == "levels" || name == "durations") return PhKind::list;
    if (name == "step" || name == "count" || name == "points" || name == "ch") return PhKind::integer;
    return PhKind::number;
}

// Upper-case, trim, drop a leading ':', collapse blanks, no blanks around
// ',' or ';'. Text inside {…} is kept as is when `keep_braces`.
std::string normalize(std::string_view in, bool keep_braces) {
    std::string out;
    out.reserve(in.size());
    bool in_brace = false;
    bool pending_space = false;
    for (char c : in) {
        if (keep_braces && c == '{') in_brace = true;
        if (in_brace) {
            if (pending_space && !out.empty() && out.back() != ',') out += ' ';
            pending_space = false;
            out += c;
            if (c == '}') in_brace = false;
            continue;
        }
        if (std::isspace(static_cast<unsigned char>(c))) {
            pending_space = true;
            continue;
        }
        if (c == ',') {
            pending_space = false;
            out += c;
            continue;
        }
        if (pending_space && !out.empty() && out.back() != ',') out += ' ';
        pending_space = false;
        out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    if (!out.empty() && out.front() == ':') out.erase(0, 1);
    return out;
}

std::vector<Token> compile(std::string_view tmpl) {
    const std::string n = normalize(tmpl, true);
    std::vector<Token> toks;
    std::size_t k = 0;
    while (k < n.size()) {
        if (n[k] == '{') {
            const std::size_t e = n.find('}', k);
            Token t;
            t.literal = false;
            t.text = n.substr(k + 1, e - k - 1);
            t.kind = kind_of(t.text);
            toks.push_back(std::move(t));
            k = e + 1;
        } else {
            const std::size_t e = std::min(n.find('{', k), n.size());
            toks.push_back(Token{true, n.substr(k, e - k), PhKind::number});
            k = e;
        }
    }
    return toks;
}

// Length of the number at the start of s (0 if none).
std::size_t scan_number(std::string_view s, bool integer_only) {
    std::size_t k = 0;
    if (!integer_only && k < s.size() && (s[k] == '+' || s[k] == '-')) ++k;
    const std::size_t d0 = k;
    while (k < s.size() && std::isdigit(static_cast<unsigned char>(s[k]))) ++k;
    if (integer_only) return k > d0 ? k : 0;
    std::size_t digits = k - d0;
    if (k < s.size() && s[k] == '.') {
        ++k;
        const std::size_t f0 = k;
        while (k < s.size() && std::isdigit(static_cast<unsigned char>(s[k]))) ++k;
        digits += k - f0;
    }
    if (digits == 0) return 0;
    if (k < s.size() && (s[k] == 'E' || s[k] == 'e')) {
        std::size_t e = k + 1;
        if (e < s.size() && (s[e] == '+' || s[e] == '-')) ++e;
        const std::size_t e0 = e;
        while (e < s.size() && std::isdigit(static_cast<unsigned char>(s[e]))) ++e;
        if (e > e0) k = e;
    }
    return k;
}

double to_double(std::string_view s) {
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    double v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
}

void store(Captures& c, const std::string& name, double v) {
    if (name == "value") c.value = v;
    else if (name == "interval") c.interval = v;
    else if (name == "step") c.step = static_cast<long>(v);
    else if (name == "count") c.count = static_cast<long>(v);
    else if (name == "points") c.points = static_cast<long>(v);
    else if (name == "ch") c.ch = static_cast<long>(v);
}

bool match(const std::vector<Token>& toks, std::size_t ti, std::string_view in, Captures& c) {
    if (ti == toks.size()) return in.empty();
    const Token& t = toks[ti];
    if (t.literal) {
        if (in.substr(0, t.text.size()) != t.text) return false;
        return match(toks, ti + 1, in.substr(t.text.size()), c);
    }
    if (t.kind != PhKind::list) {
        const std::size_t n = scan_number(in, t.kind == PhKind::integer);
        if (n == 0) return false;
        store(c, t.text, to_double(in.substr(0, n)));
        return match(toks, ti + 1, in.substr(n), c);
    }
    // A list: every possible end, longest first.
    std::vector<std::size_t> ends;
    std::size_t k = 0;
    while (true) {
        const std::size_t n = scan_number(in.substr(k), false);
        if (n == 0) break;
        k += n;
        ends.push_back(k);
        if (k < in.size() && in[k] == ',') ++k;
        else break;
    }
    for (auto it = ends.rbegin(); it != ends.rend(); ++it) {
        Captures trial = c;
        std::vector<double> vals;
        std::string_view body = in.substr(0, *it);
        std::size_t p = 0;
        while (p < body.size()) {
            const std::size_t n = scan_number(body.substr(p), false);
            vals.push_back(to_double(body.substr(p, n)));
            p += n + 1;
        }
        (t.text == "levels" ? trial.levels : trial.durations) = std::move(vals);
        if (match(toks, ti + 1, in.substr(*it), trial)) {
            c = std::move(trial);
            return true;
        }
    }
    return false;
}

enum class EntryKind { command, fixed, arm, select };

struct Entry {
    EntryKind kind = EntryKind::command;
    Cmd cmd = Cmd::identify;
    bool addressed = false;  // the channel comes from {ch}
    std::vector<Token> toks;
};

std::string fmt_reading(double v) { return fmt::format("{:.7g}", v); }

}  // namespace

// ------------------------------------------------------------------ device

struct ScpiLoadServer::Impl {
    struct Channel {
        std::size_t pos = 0;
        instruments::LoadMode mode = instruments::LoadMode::cc;
        double level[4] = {0, 0, 0, 0};
        bool input = false;
        std::vector<double> levels, durations;
        double log_interval_s = 0.01;
        std::size_t log_points = 0;
        bool armed = false;
        bool ran = false;
        instruments::Protection prot;
    };

    struct Session;

    Impl(Dialect d, std::shared_ptr<Fixture> f, ScpiLoadServerOptions o)
        : dialect(std::move(d)), fixture(std::move(f)), opt(std::move(o)), acceptor(io) {
        if (!fixture) throw std::invalid_argument("ScpiLoadServer: no fixture");
        if (opt.positions.empty())
            for (int k = 0; k < dialect.channels; ++k)
                opt.positions.push_back(static_cast<std::size_t>(k));
        if (opt.positions.size() > static_cast<std::size_t>(dialect.channels))
            throw std::invalid_argument("ScpiLoadServer '" + opt.name + "': " +
                                        std::to_string(opt.positions.size()) +
                                        " channels mapped but dialect '" + dialect.name +
                                        "' has " + std::to_string(dialect.channels));
        for (std::size_t p : opt.positions) {
            if (p >= fixture->size())
                throw std::invalid_argument("ScpiLoadServer '" + opt.name + "': fixture position " +
                                            std::to_string(p + 1) + " does not exist (" +
                                            std::to_string(fixture->size()) + " positions)");
            Channel c;
            c.pos = p;
            channels.push_back(c);
        }
        build_entries();
    }

    void add(EntryKind kind, Cmd cmd, const std::string& body) {
        entries.push_back(Entry{kind, cmd, false, compile(body)});
        const bool global = kind == EntryKind::command && instruments::command_info(cmd).global;
        if (!global && dialect.channel_style == instruments::ChannelStyle::suffix) {
            const std::string& sfx =
                body.find(' ') == std::string::npos ? dialect.bare_suffix : dialect.suffix;
            entries.push_back(Entry{kind, cmd, true, compile(body + sfx)});
        }
    }

    void build_entries() {
        for (std::size_t k = 0; k < instruments::kCmdCount; ++k) {
            const auto c = static_cast<Cmd>(k);
            if (dialect.has(c)) add(EntryKind::command, c, dialect.text(c));
        }
        for (const auto& s : dialect.pulse_setup_global)
            entries.push_back(Entry{EntryKind::fixed, Cmd::identify, false, compile(s)});
        for (const auto& s : dialect.pulse_setup) add(EntryKind::fixed, Cmd::identify, s);
        for (const auto& s : dialect.pulse_arm) add(EntryKind::arm, Cmd::identify, s);
        if (dialect.channel_style == instruments::ChannelStyle::prefix) {
            std::string sel = dialect.prefix.substr(0, dialect.prefix.find(';'));
            entries.push_back(Entry{EntryKind::select, Cmd::identify, true, compile(sel)});
        }
    }

    // ---- error queue (device-wide, at most 20 entries as SCPI instruments keep)
    void push_error(std::string e) {
        if (errors.size() >= 20) {
            errors.back() = "-350,\"Queue overflow\"";
            return;
        }
        errors.push_back(std::move(e));
    }
    void error(int code, std::string_view msg, std::string_view detail = {}) {
        std::string text = fmt::format("{},\"{}", code, msg);
        if (!detail.empty()) text += fmt::format("; {}", detail);
        text += "\"";
        push_error(std::move(text));
    }

    // ---- fixture link
    static LoadMode to_sim(instruments::LoadMode m) {
        switch (m) {
        case instruments::LoadMode::cc: return LoadMode::cc;
        case instruments::LoadMode::cv: return LoadMode::cv;
        case instruments::LoadMode::cr: return LoadMode::cr;
        case instruments::LoadMode::cp: return LoadMode::cp;
        }
        return LoadMode::cc;
    }
    void apply(Channel& c) {
        fixture->set_load(c.pos, LoadSetting{to_sim(c.mode), c.level[static_cast<int>(c.mode)], c.input});
    }
    void input_off(Channel& c) {
        c.input = false;
        c.armed = false;
        if (c.ran && !fixture->profile_done(c.pos)) fixture->abort_profile(c.pos);
        apply(c);
    }
    bool busy(Channel& c) { return c.ran && !fixture->profile_done(c.pos); }

    void check_protection() {
        const auto& lim = dialect.simulator;
        for (auto& c : channels) {
            if (!c.input && !busy(c)) continue;
            const double v = fixture->measure_voltage_v(c.pos);
            const double i = fixture->measure_current_a(c.pos);
            instruments::Protection trip;
            trip.over_voltage = v > lim.max_voltage_v;
            trip.over_current = i > lim.max_current_a * 1.02;
            trip.over_power = v * i > lim.max_power_w;
            trip.reverse_voltage = v < -0.2;
            if (trip.any()) {
                c.prot.over_voltage |= trip.over_voltage;
                c.prot.over_current |= trip.over_current;
                c.prot.over_power |= trip.over_power;
                c.prot.reverse_voltage |= trip.reverse_voltage;
                input_off(c);
            }
        }
    }

    bool level_ok(instruments::LoadMode m, double v) const {
        const auto& lim = dialect.simulator;
        if (!std::isfinite(v) || v < 0) return false;
        switch (m) {
        case instruments::LoadMode::cc: return v <= lim.max_current_a;
        case instruments::LoadMode::cv: return v <= lim.max_voltage_v;
        case instruments::LoadMode::cr: return v > 0 && v <= 1e6;
        case instruments::LoadMode::cp: return v <= lim.max_power_w;
        }
        return false;
    }

    std::string array_reply(const std::vector<double>& v) const {
        const std::string payload = instruments::encode_binary_block(v, dialect.array_format);
        if (dialect.array_format == instruments::ArrayFormat::ascii) return payload;
        return instruments::definite_length_block(payload);
    }

    void start_pulse(Channel& c) {
        std::vector<double> dur = c.durations;
        if (dur.size() == 1 && c.levels.size() > 1) dur.assign(c.levels.size(), dur[0]);
        if (c.levels.empty() || dur.size() != c.levels.size()) {
            error(-221, "Settings conflict", "list levels and dwell times differ in length or are empty");
            return;
        }
        std::vector<ProfileStep> steps;
        for (std::size_t k = 0; k < c.levels.size(); ++k) {
            if (!(dur[k] > 0)) {
                error(-221, "Settings conflict", "list step without a dwell time");
                return;
            }
            // With the input off the list runs but no current flows.
            steps.push_back(ProfileStep{c.input ? c.levels[k] : 0.0, dur[k]});
        }
        fixture->start_profile(c.pos, std::move(steps), c.log_interval_s, c.log_points);
        c.ran = true;
    }

    // Executes one command (no ';' inside). Returns the reply (may be empty).
    std::optional<std::string> execute(std::string_view raw, int& selected) {
        const std::string in = normalize(raw, false);
        if (in.empty()) return std::nullopt;
        const Entry* hit = nullptr;
        Captures cap;
        for (const auto& e : entries) {
            Captures c;
            if (match(e.toks, 0, in, c)) {
                hit = &e;
                cap = std::move(c);
                break;
            }
        }
        if (!hit) {
            error(-113, "Undefined header", in);
            return std::nullopt;
        }
        int ch = selected;
        if (hit->addressed) ch = static_cast<int>(cap.ch.value_or(1));
        if (hit->kind == EntryKind::select) {
            if (ch < 1 || ch > static_cast<int>(channels.size())) {
                error(-222, "Data out of range", fmt::format("channel {}", ch));
                return std::nullopt;
            }
            selected = ch;
            return std::nullopt;
        }
        const bool global = hit->kind == EntryKind::command && instruments::command_info(hit->cmd).global;
        if (!global && (ch < 1 || ch > static_cast<int>(channels.size()))) {
            error(-222, "Data out of range", fmt::format("channel {}", ch));
            return instruments::command_info(hit->cmd).query && hit->kind == EntryKind::command
                       ? std::optional<std::string>("")
                       : std::nullopt;
        }
        Channel* c = global ? nullptr : &channels[static_cast<std::size_t>(ch - 1)];
        switch (hit->kind) {
        case EntryKind::fixed: return std::nullopt;
        case EntryKind::arm: c->armed = true; return std::nullopt;
        case EntryKind::select: return std::nullopt;
        case EntryKind::command: break;
        }
        return run(hit->cmd, c, cap);
    }

    std::optional<std::string> run(Cmd cmd, Channel* c, const Captures& a) {
        using M = instruments::LoadMode;
        auto set_mode = [&](M m) {
            c->mode = m;
            apply(*c);
            return std::nullopt;
        };
        auto set_level = [&](M m) -> std::optional<std::string> {
            const double v = a.value.value_or(-1);
            if (!level_ok(m, v)) {
                error(-222, "Data out of range", fmt_reading(v));
                return std::nullopt;
            }
            c->level[static_cast<int>(m)] = v;
            apply(*c);
            return std::nullopt;
        };
        switch (cmd) {
        case Cmd::identify: return dialect.simulator.idn;
        case Cmd::reset:
            for (auto& ch : channels) {
                input_off(ch);
                if (ch.ran) fixture->abort_profile(ch.pos);
                const std::size_t pos = ch.pos;
                ch = Channel{};
                ch.pos = pos;
                apply(ch);
            }
            return std::nullopt;
        case Cmd::clear_status: errors.clear(); return std::nullopt;
        case Cmd::error_query: {
            if (errors.empty()) return std::string("+0,\"No error\"");
            std::string e = errors.front();
            errors.pop_front();
            return e;
        }
        case Cmd::opc_query: return std::string("1");
        case Cmd::mode_cc: return set_mode(M::cc);
        case Cmd::mode_cv: return set_mode(M::cv);
        case Cmd::mode_cr: return set_mode(M::cr);
        case Cmd::mode_cp: return set_mode(M::cp);
        case Cmd::level_cc: return set_level(M::cc);
        case Cmd::level_cv: return set_level(M::cv);
        case Cmd::level_cr: return set_level(M::cr);
        case Cmd::level_cp: return set_level(M::cp);
        case Cmd::input_on:
            if (c->prot.any()) {
                error(-221, "Settings conflict", "protection tripped; clear it first");
                return std::nullopt;
            }
            c->input = true;
            apply(*c);
            return std::nullopt;
        case Cmd::input_off: input_off(*c); return std::nullopt;
        case Cmd::measure_voltage: return fmt_reading(fixture->measure_voltage_v(c->pos));
        case Cmd::measure_current:
            return fmt_reading(dialect.current_sign * fixture->measure_current_a(c->pos));
        case Cmd::measure_power:
            return fmt_reading(fixture->measure_voltage_v(c->pos) * fixture->measure_current_a(c->pos));
        case Cmd::protection_query:
            return std::to_string(dialect.protection.encode(c->prot));
        case Cmd::protection_clear: c->prot = {}; return std::nullopt;
        case Cmd::list_levels:
        case Cmd::list_durations: {
            const auto& v = cmd == Cmd::list_levels ? a.levels : a.durations;
            if (v.empty() || v.size() > dialect.max_list_steps) {
                error(-222, "Data out of range", fmt::format("{} list steps", v.size()));
                return std::nullopt;
            }
            for (double x : v)
                if (cmd == Cmd::list_levels ? !level_ok(M::cc, x) : !(x > 0 && std::isfinite(x))) {
                    error(-222, "Data out of range", fmt_reading(x));
                    return std::nullopt;
                }
            (cmd == Cmd::list_levels ? c->levels : c->durations) = v;
            return std::nullopt;
        }
        case Cmd::list_step_count: {
            const long n = a.count.value_or(0);
            if (n < 1 || static_cast<std::size_t>(n) > dialect.max_list_steps) {
                error(-222, "Data out of range", fmt::format("{} list steps", n));
                return std::nullopt;
            }
            c->levels.assign(static_cast<std::size_t>(n), 0.0);
            c->durations.assign(static_cast<std::size_t>(n), 0.0);
            return std::nullopt;
        }
        case Cmd::list_step_level:
        case Cmd::list_step_duration: {
            const long s = a.step.value_or(0);
            const double v = a.value.value_or(-1);
            if (s < 1 || static_cast<std::size_t>(s) > c->levels.size()) {
                error(-222, "Data out of range",
                      fmt::format("step {} of {}", s, c->levels.size()));
                return std::nullopt;
            }
            const bool ok = cmd == Cmd::list_step_level ? level_ok(M::cc, v) : (v > 0 && std::isfinite(v));
            if (!ok) {
                error(-222, "Data out of range", fmt_reading(v));
                return std::nullopt;
            }
            (cmd == Cmd::list_step_level ? c->levels : c->durations)[static_cast<std::size_t>(s - 1)] = v;
            return std::nullopt;
        }
        case Cmd::logger_interval: {
            const double v = a.interval.value_or(0);
            if (!(v >= 1e-5 && v <= 3600)) {
                error(-222, "Data out of range", fmt_reading(v));
                return std::nullopt;
            }
            c->log_interval_s = v;
            return std::nullopt;
        }
        case Cmd::logger_points: {
            const long n = a.points.value_or(0);
            if (n < 1 || static_cast<std::size_t>(n) > dialect.max_logger_points) {
                error(-222, "Data out of range", fmt::format("{} points", n));
                return std::nullopt;
            }
            c->log_points = static_cast<std::size_t>(n);
            return std::nullopt;
        }
        case Cmd::trigger: {
            bool any = false;
            for (auto& ch : channels)
                if (ch.armed) {
                    ch.armed = false;
                    any = true;
                    start_pulse(ch);
                }
            if (!any) error(-211, "Trigger ignored", "nothing armed");
            return std::nullopt;
        }
        case Cmd::pulse_status: {
            std::uint64_t s = busy(*c) ? dialect.busy_mask : 0;
            return std::to_string(s);
        }
        case Cmd::fetch_voltage:
        case Cmd::fetch_current: {
            if (!c->ran) {
                error(-230, "Data corrupt or stale", "no acquisition");
                return array_reply({});
            }
            LoggedSamples log = fixture->fetch_log(c->pos);
            if (cmd == Cmd::fetch_voltage) return array_reply(log.v_v);
            for (double& i : log.i_a) i *= dialect.current_sign;
            return array_reply(log.i_a);
        }
        case Cmd::pulse_abort:
            c->armed = false;
            if (busy(*c)) fixture->abort_profile(c->pos);
            return std::nullopt;
        case Cmd::count_: break;
        }
        return std::nullopt;
    }

    // Handles one request line; returns the reply line without terminator,
    // or nullopt when nothing is to be sent.
    std::optional<std::string> handle_line(std::string_view line, int& selected) {
        std::lock_guard lk(mu);
        ++command_count;
        std::vector<std::string> replies;
        std::size_t start = 0;
        for (std::size_t k = 0; k <= line.size(); ++k) {
            if (k < line.size() && line[k] != ';') continue;
            const std::string_view part = line.substr(start, k - start);
            start = k + 1;
            const std::size_t before = errors.size();
            auto r = execute(part, selected);
            if (r) replies.push_back(std::move(*r));
            // A command error ends the line, as on SCPI instruments.
            if (errors.size() > before) break;
        }
        check_protection();
        if (replies.empty()) return std::nullopt;
        std::string out = replies[0];
        for (std::size_t k = 1; k < replies.size(); ++k) out += ";" + replies[k];
        return out;
    }

    void accept();

    Dialect dialect;
    std::shared_ptr<Fixture> fixture;
    ScpiLoadServerOptions opt;
    Faults faults;
    std::vector<Channel> channels;
    std::vector<Entry> entries;
    std::deque<std::string> errors;
    std::uint64_t command_count = 0;
    mutable std::mutex mu;

    asio::io_context io;
    tcp::acceptor acceptor;
    std::thread thread;
    std::atomic<bool> is_running{false};
    std::uint16_t bound_port = 0;
    std::mutex sessions_m;
    std::set<std::shared_ptr<Session>> sessions;
    asio::steady_timer accept_retry{io};
    std::atomic<std::uint64_t> refused{0};
    std::uint64_t refused_unlogged = 0;  // I/O thread only
    std::chrono::steady_clock::time_point refused_logged_at{};
};

struct ScpiLoadServer::Impl::Session : std::enable_shared_from_this<Session> {
    Session(Impl& i, tcp::socket s) : impl(i), sock(std::move(s)), timer(impl.io), buf(1u << 20) {
        error_code ignored;
        sock.set_option(tcp::no_delay(true), ignored);
    }

    void start() { read(); }

    void close() {
        error_code ignored;
        sock.shutdown(tcp::socket::shutdown_both, ignored);
        sock.close(ignored);
        timer.cancel();
        std::lock_guard lk(impl.sessions_m);
        impl.sessions.erase(shared_from_this());
    }

    void read() {
        asio::async_read_until(sock, buf, '\n',
                               [self = shared_from_this()](const error_code& ec, std::size_t n) {
                                   if (ec) {
                                       self->close();
                                       return;
                                   }
                                   std::string line(asio::buffers_begin(self->buf.data()),
                                                    asio::buffers_begin(self->buf.data()) +
                                                        static_cast<std::ptrdiff_t>(n));
                                   self->buf.consume(n);
                                   while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
                                       line.pop_back();
                                   self->handle(line);
                               });
    }

    void handle(const std::string& line) {
        FaultSettings f;
        impl.faults.update([&](FaultSettings& s) {
            f = s;
            s.drop_connection = false;
            s.scpi_error.clear();
        });
        if (f.no_reply) {
            read();
            return;
        }
        if (f.drop_connection) {
            close();
            return;
        }
        auto reply = impl.handle_line(line, selected);
        // After the command, as the instrument's own error would be (a *CLS
        // must not swallow the injected error).
        if (!f.scpi_error.empty()) {
            std::lock_guard lk(impl.mu);
            impl.push_error(f.scpi_error);
        }
        if (!reply) {
            read();
            return;
        }
        bool garbage = false, truncated = false;
        impl.faults.update([&](FaultSettings& s) {
            garbage = s.garbage_reply;
            truncated = !garbage && s.truncated_reply;
            if (garbage) s.garbage_reply = false;
            if (truncated) s.truncated_reply = false;
        });
        if (garbage) {
            out = "\x15\xfe?GARBAGE\x7f%&*!\n";
        } else if (truncated) {
            out = reply->substr(0, std::max<std::size_t>(1, reply->size() / 2));
        } else {
            out = std::move(*reply);
            out += '\n';
        }
        if (f.latency_s > 0) {
            held_since = std::chrono::steady_clock::now();
            held_latency_s = f.latency_s;
            wait_latency();
        } else {
            write();
        }
    }

    // The reply waits out its latency in short slices: the latency in force
    // now counts, so clearing the fault sends every held reply at once.
    void wait_latency() {
        using Clock = std::chrono::steady_clock;
        const double latency_s = std::min(held_latency_s, impl.faults.get().latency_s);
        const auto due = held_since + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(std::max(0.0, latency_s)));
        const auto now = Clock::now();
        if (now >= due) {
            write();
            return;
        }
        timer.expires_after(std::min<Clock::duration>(due - now, std::chrono::milliseconds(50)));
        timer.async_wait([self = shared_from_this()](const error_code& ec) {
            if (ec) return;
            self->wait_latency();
        });
    }

    void write() {
        asio::async_write(sock, asio::buffer(out),
                          [self = shared_from_this()](const error_code& ec, std::size_t) {
                              if (ec) {
                                  self->close();
                                  return;
                              }
                              self->read();
                          });
    }

    Impl& impl;
    tcp::socket sock;
    asio::steady_timer timer;
    asio::streambuf buf;
    std::string out;
    int selected = 1;
    std::chrono::steady_clock::time_point held_since{};  // a reply held by a latency fault
    double held_latency_s = 0;
};

void ScpiLoadServer::Impl::accept() {
    acceptor.async_accept([this](const error_code& ec, tcp::socket s) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;  // closed
        if (ec) {
            // Out of descriptors (EMFILE) or a connection reset before it was
            // accepted: try again a little later rather than spinning or giving up.
            accept_retry.expires_after(std::chrono::milliseconds(100));
            accept_retry.async_wait([this](const error_code& e) {
                if (!e) accept();
            });
            return;
        }
        std::size_t open_sessions = 0;
        {
            std::lock_guard lk(sessions_m);
            open_sessions = sessions.size();
        }
        if (open_sessions >= opt.max_clients) {
            error_code ignored;
            s.close(ignored);
            ++refused;
            ++refused_unlogged;
            const auto now = std::chrono::steady_clock::now();
            if (now - refused_logged_at >= std::chrono::seconds(1)) {
                std::fprintf(stderr, "sim: %s at %s:%u: refused %llu client connection(s): %zu clients "
                             "connected, the limit of this server\n",
                             opt.name.c_str(), opt.host.c_str(), static_cast<unsigned>(bound_port),
                             static_cast<unsigned long long>(refused_unlogged), open_sessions);
                std::fflush(stderr);
                refused_unlogged = 0;
                refused_logged_at = now;
            }
        } else {
            auto session = std::make_shared<Session>(*this, std::move(s));
            {
                std::lock_guard lk(sessions_m);
                sessions.insert(session);
            }
            session->start();
        }
        accept();
    });
}

ScpiLoadServer::ScpiLoadServer(Dialect dialect, std::shared_ptr<Fixture> fixture,
                               ScpiLoadServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(dialect), std::move(fixture), std::move(options))) {}

ScpiLoadServer::~ScpiLoadServer() { stop(); }

void ScpiLoadServer::start() {
    if (impl_->is_running) return;
    auto& I = *impl_;
    try {
        const tcp::endpoint ep(asio::ip::make_address(I.opt.host), I.opt.port);
        I.acceptor.open(ep.protocol());
        I.acceptor.set_option(tcp::acceptor::reuse_address(true));
        I.acceptor.bind(ep);
        I.acceptor.listen();
        I.bound_port = I.acceptor.local_endpoint().port();
    } catch (const std::exception& e) {
        error_code ignored;
        I.acceptor.close(ignored);
        throw std::runtime_error("simulated load '" + I.opt.name + "': cannot listen on " +
                                 I.opt.host + ":" + std::to_string(I.opt.port) + ": " + e.what());
    }
    I.accept();
    I.is_running = true;
    I.thread = std::thread([&I] { I.io.run(); });
}

void ScpiLoadServer::stop() {
    auto& I = *impl_;
    if (!I.is_running.exchange(false)) return;
    asio::post(I.io, [&I] {
        error_code ignored;
        I.acceptor.close(ignored);
        I.accept_retry.cancel();
        std::set<std::shared_ptr<Impl::Session>> all;
        {
            std::lock_guard lk(I.sessions_m);
            all = I.sessions;
        }
        for (auto& s : all) s->close();
        I.io.stop();
    });
    if (I.thread.joinable()) I.thread.join();
    std::lock_guard lk(I.sessions_m);
    I.sessions.clear();
}

bool ScpiLoadServer::running() const { return impl_->is_running; }
std::uint16_t ScpiLoadServer::port() const { return impl_->bound_port; }
const std::string& ScpiLoadServer::host() const { return impl_->opt.host; }
std::string ScpiLoadServer::endpoint() const {
    return impl_->opt.host + ":" + std::to_string(impl_->bound_port);
}
const std::string& ScpiLoadServer::name() const { return impl_->opt.name; }
const Dialect& ScpiLoadServer::dialect() const { return impl_->dialect; }
Faults& ScpiLoadServer::faults() { return impl_->faults; }

std::uint64_t ScpiLoadServer::refused() const { return impl_->refused; }

std::vector<std::string> ScpiLoadServer::error_queue() const {
    std::lock_guard lk(impl_->mu);
    return {impl_->errors.begin(), impl_->errors.end()};
}

std::uint64_t ScpiLoadServer::commands() const {
    std::lock_guard lk(impl_->mu);
    return impl_->command_count;
}

}  // namespace eol::sim
